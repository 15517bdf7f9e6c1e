/* udp-echo PORT: answers every UDP datagram on PORT (all IPv4 addresses) with the same bytes.
 * The replica of the UDP end-to-end test (crates/kumo-cli/tests/udp_e2e.rs); busybox's nc has
 * no UDP mode. Built static by scripts/test-images.sh into the image kumo-test/udp-echo:1. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp-echo PORT\n");
        return 2;
    }
    int port = atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "udp-echo: %s is not a port (1-65535)\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("udp-echo: socket");
        return 1;
    }
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp-echo: bind");
        return 1;
    }
    printf("udp-echo listening on %d/udp\n", port);
    fflush(stdout);
    static char buf[65536];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (n < 0)
            continue;
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    }
}
