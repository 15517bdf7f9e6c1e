//! Running a command in a replica (the tenant's shell): the engine's exec API, attached.

use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::ResizeExecOptionsBuilder;
use futures::StreamExt;
use kumo_types::LeaseId;

use super::{DockerBackend, label, labels};
use crate::WorkloadError;
use crate::backend::{ExecControl, ExecOutput, ExecRequest, ExecSession, StdStream};

impl DockerBackend {
    pub(super) async fn exec_session(
        &self,
        lease: &LeaseId,
        req: &ExecRequest,
    ) -> Result<ExecSession, WorkloadError> {
        let containers = self.containers(lease).await?;
        if containers.is_empty() {
            return Err(WorkloadError::LeaseNotFound {
                lease: lease.to_string(),
            });
        }
        let of_service: Vec<_> = containers
            .iter()
            .filter(|c| label(&c.labels, labels::SERVICE) == req.service)
            .collect();
        if of_service.is_empty() {
            let mut known: Vec<&str> = containers
                .iter()
                .map(|c| label(&c.labels, labels::SERVICE))
                .collect();
            known.sort();
            known.dedup();
            return Err(WorkloadError::UnknownService {
                lease: lease.to_string(),
                service: req.service.clone(),
                known: known.join(", "),
            });
        }
        let Some(container) = of_service
            .iter()
            .find(|c| label(&c.labels, labels::REPLICA) == req.replica.to_string())
        else {
            return Err(WorkloadError::UnknownReplica {
                service: req.service.clone(),
                replica: req.replica,
                count: label(&of_service[0].labels, labels::COUNT)
                    .parse()
                    .unwrap_or(0),
            });
        };
        if container.state != Some(ContainerSummaryStateEnum::RUNNING) {
            return Err(WorkloadError::NotRunning {
                service: req.service.clone(),
                replica: req.replica,
                state: container
                    .state
                    .map_or_else(|| "unknown".to_string(), |s| s.to_string()),
            });
        }
        let id = container.id.clone().unwrap_or_default();

        let created = self
            .docker
            .create_exec(
                &id,
                CreateExecOptions {
                    attach_stdin: Some(req.stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(req.tty),
                    env: Some(req.env.clone()),
                    cmd: Some(req.cmd.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                WorkloadError::engine(
                    format!(
                        "starting a command in {} replica {}",
                        req.service, req.replica
                    ),
                    e,
                )
            })?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: req.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| {
                WorkloadError::engine(format!("attaching to command {}", created.id), e)
            })?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(WorkloadError::engine(
                format!("attaching to command {}", created.id),
                std::io::Error::other("the engine started the command detached"),
            ));
        };
        let output = output
            .filter_map(|frame| async move {
                match frame {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Ok(ExecOutput {
                            stream: StdStream::Stdout,
                            bytes: message,
                        }))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok(ExecOutput {
                        stream: StdStream::Stderr,
                        bytes: message,
                    })),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(WorkloadError::engine("reading a command's output", e))),
                }
            })
            .boxed();
        let stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>> = if req.stdin {
            input
        } else {
            Box::pin(tokio::io::sink())
        };
        let control = DockerExec {
            docker: self.docker.clone(),
            id: created.id,
        };
        Ok(ExecSession::new(
            stdin,
            output,
            std::sync::Arc::new(control),
        ))
    }
}

/// The engine side of one running command.
struct DockerExec {
    docker: Docker,
    id: String,
}

#[async_trait]
impl ExecControl for DockerExec {
    async fn resize(&self, columns: u16, rows: u16) -> Result<(), WorkloadError> {
        let opts = ResizeExecOptionsBuilder::new()
            .w(i32::from(columns))
            .h(i32::from(rows))
            .build();
        self.docker.resize_exec(&self.id, opts).await.map_err(|e| {
            WorkloadError::engine(format!("resizing the terminal of command {}", self.id), e)
        })
    }

    async fn exit_code(&self) -> Result<i64, WorkloadError> {
        // The output ends a moment before the engine records the exit: poll briefly.
        let mut delay = Duration::from_millis(10);
        loop {
            let inspect =
                self.docker.inspect_exec(&self.id).await.map_err(|e| {
                    WorkloadError::engine(format!("inspecting command {}", self.id), e)
                })?;
            if inspect.running != Some(true)
                && let Some(code) = inspect.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}
