# The KVM probe's test guest (crates/kumo-vm/src/accel.rs embeds its bytes as PROBE_CODE and
# PROBE_RESET): a 64 KiB firmware image that QEMU maps as the BIOS. From the reset vector it
# does what every Linux guest's boot does before the kernel prints anything (protected mode,
# 4-level paging, long mode), then, in 64-bit mode, writes "kumo-kvm-probe-ok\n" to the serial
# port (0x3f8) and 0x31 to isa-debug-exit (0xf4): QEMU exits with status (0x31 << 1) | 1 = 99.
# A real-mode-only payload is not enough: a host was seen whose KVM runs real-mode code (so
# SeaBIOS starts) but never gets a guest through long mode.
#
# Rebuild (the unit test `probe_bytes_match_the_source` checks the embedded bytes):
#   as --64 -o probe.o kvm_probe.S
#   ld -m elf_x86_64 -Ttext=0 -e _start --oformat=binary -o probe.bin probe.o
# The image is linked at offset 0; QEMU maps its last 64 KiB at 0xF0000 (real-mode segment
# 0xF000), so linear addresses are 0xF0000 + offset. Page tables go in RAM at 0x1000-0x3fff.
        .code16
        .text
        .globl _start
_start:
        cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        # Zero three pages (PML4, PDPT, PD) and map the first 2 MiB 1:1 with one large page.
        movw    $0x1000, %di
        movw    $(3 * 4096 / 4), %cx
        xorl    %eax, %eax
        cld
        rep stosl
        movl    $0x2003, 0x1000
        movl    $0x3003, 0x2000
        movl    $0x83, 0x3000
        lgdtl   %cs:gdtr
        movl    %cr0, %eax
        orb     $1, %al
        movl    %eax, %cr0
        ljmpl   $0x08, $(0xF0000 + pm32)
        .code32
pm32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    %cr4, %eax
        orl     $0x20, %eax             # PAE
        movl    %eax, %cr4
        movl    $0x1000, %eax
        movl    %eax, %cr3
        movl    $0xC0000080, %ecx       # EFER
        rdmsr
        orl     $0x100, %eax            # LME
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000000, %eax       # PG: long mode is active
        movl    %eax, %cr0
        ljmpl   $0x18, $(0xF0000 + lm64)
        .code64
lm64:
        movw    $0x3f8, %dx
        leaq    marker(%rip), %rsi
        movl    $(marker_end - marker), %ecx
1:      lodsb
        outb    %al, %dx
        loop    1b
        movb    $0x31, %al
        outb    %al, $0xf4
2:      hlt
        jmp     2b
marker: .ascii  "kumo-kvm-probe-ok\n"
marker_end:
        .balign 8
gdt:    .quad   0
        .quad   0x00CF9A000000FFFF      # 0x08: 32-bit code
        .quad   0x00CF92000000FFFF      # 0x10: data
        .quad   0x00AF9A000000FFFF      # 0x18: 64-bit code
gdtr:   .word   gdtr - gdt - 1
        .long   0xF0000 + gdt
        .org    0xFFF0, 0xf4
        .code16
        # The reset vector (linear 0xFFFFFFF0): to _start through the low alias.
        ljmp    $0xf000, $_start
        .org    0x10000, 0xf4
