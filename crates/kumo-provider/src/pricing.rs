//! What to bid: a linear price per resource, or the answer of an external command (Akash's
//! shell-script strategy).
//!
//! The script gets one JSON object on stdin and prints the price per block for the whole group
//! on stdout, a decimal number in the order's denomination:
//!
//! ```json
//! {"order": {"owner": "kumo1…", "dseq": 7, "gseq": 1, "oseq": 1}, "denom": "ukumo",
//!  "max_price": "1000", "group": { "name": "…", "requirements": {…}, "resources": [ … ] },
//!  "gpus": [{"vendor": "nvidia", "model": "h100", "ram": "80Gi", "interface": "sxm", "count": 1}]}
//! ```
//!
//! `gpus` lists the specific GPUs the provider reserved for the order, by kind (empty when the
//! group needs none). The linear strategy prices each of them by `gpu_per_model[model]`
//! (or `gpu_per_model.default`); a model with neither gets no bid.
//!
//! A script that fails, prints something else or runs past `script_timeout` gives no price
//! ([`PricingError`]); it is killed, and the order simply gets no bid.

use std::{process::Stdio, time::Duration};

use kumo_types::{Dec, DecCoin, GroupSpec, OrderId};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::config::PricingConfig;

const GIB: u128 = 1 << 30;

/// Why no price came out.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The script could not start.
    #[error("price script {program:?} could not start: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// It ran too long and was killed.
    #[error("price script ran longer than {0:?} and was killed")]
    Timeout(Duration),
    /// It exited with an error.
    #[error("price script failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// A GPU model has no price.
    #[error("no price for GPU model {0:?}: add it (or \"default\") to pricing.gpu_per_model")]
    NoGpuPrice(String),
    /// Its output is not a price.
    #[error("price script printed {0:?}, not a decimal price")]
    Garbage(String),
    /// The computed price overflows.
    #[error("the price overflows")]
    Overflow,
}

/// The JSON a price script reads.
#[derive(Debug, Serialize)]
pub struct ScriptInput<'a> {
    /// The order.
    pub order: &'a OrderId,
    /// The denomination to price in.
    pub denom: &'a str,
    /// The most the tenant pays per block.
    pub max_price: Dec,
    /// The group: requirements and resources.
    pub group: &'a GroupSpec,
    /// The GPUs reserved for it, by kind.
    pub gpus: Vec<kumo_types::GpuOffer>,
}

/// The price per block for `group`, in `max.denom`.
pub async fn price(
    cfg: &PricingConfig,
    order: &OrderId,
    group: &GroupSpec,
    gpus: &[kumo_gpu::GpuDevice],
    max: &DecCoin,
) -> Result<DecCoin, PricingError> {
    let amount = if cfg.strategy == "script" {
        script(cfg, order, group, gpus, max).await?
    } else {
        linear(cfg, group, gpus)?
    };
    Ok(DecCoin::new(max.denom.clone(), amount))
}

/// The sum over units of count × (CPU + memory + storage + endpoints) prices, plus each
/// reserved GPU's price by model.
pub fn linear(
    cfg: &PricingConfig,
    group: &GroupSpec,
    gpus: &[kumo_gpu::GpuDevice],
) -> Result<Dec, PricingError> {
    let mut total: u128 = 0;
    let mul = |a: Dec, n: u128, d: u128| -> Result<u128, PricingError> {
        a.atto()
            .checked_mul(n)
            .map(|v| v / d)
            .ok_or(PricingError::Overflow)
    };
    for unit in &group.resources {
        let r = &unit.resources;
        let mut one = mul(cfg.cpu_per_core, r.cpu.millis.into(), 1000)?;
        one += mul(cfg.memory_per_gib, r.memory.bytes.into(), GIB)?;
        for s in &r.storage {
            let class = s.attribute("class").unwrap_or("ephemeral");
            let per = cfg
                .storage_per_gib
                .get(class)
                .copied()
                .unwrap_or(cfg.storage_default_per_gib);
            one += mul(per, s.bytes.into(), GIB)?;
        }
        one += mul(cfg.endpoint, r.endpoints.len() as u128, 1)?;
        total = one
            .checked_mul(unit.count.into())
            .and_then(|v| v.checked_add(total))
            .ok_or(PricingError::Overflow)?;
    }
    for d in gpus {
        let per = cfg
            .gpu_per_model
            .get(&d.model)
            .or_else(|| cfg.gpu_per_model.get("default"))
            .ok_or_else(|| PricingError::NoGpuPrice(d.model.clone()))?;
        total = total
            .checked_add(per.atto())
            .ok_or(PricingError::Overflow)?;
    }
    Ok(Dec::from_atto(total.max(1)))
}

async fn script(
    cfg: &PricingConfig,
    order: &OrderId,
    group: &GroupSpec,
    gpus: &[kumo_gpu::GpuDevice],
    max: &DecCoin,
) -> Result<Dec, PricingError> {
    let input = serde_json::to_vec(&ScriptInput {
        order,
        denom: &max.denom,
        max_price: max.amount,
        group,
        gpus: kumo_gpu::device::offers(gpus),
    })
    .expect("serializes");
    let program = cfg.script[0].clone();
    let run = async {
        let mut child = tokio::process::Command::new(&program)
            .args(&cfg.script[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| PricingError::Spawn {
                program: program.clone(),
                error,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A script that does not read its input is fine.
            let _ = stdin.write_all(&input).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|error| PricingError::Spawn {
                program: program.clone(),
                error,
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: String = err.trim().chars().rev().take(300).collect();
            return Err(PricingError::Failed {
                status: out.status.to_string(),
                stderr: tail.chars().rev().collect(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.parse::<Dec>()
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| PricingError::Garbage(text.chars().take(100).collect()))
    };
    // Dropping the future on timeout drops the child, which kills it (kill_on_drop).
    tokio::time::timeout(cfg.script_timeout, run)
        .await
        .map_err(|_| PricingError::Timeout(cfg.script_timeout))?
}

#[cfg(test)]
mod tests {
    use kumo_types::{Address, Cpu, Memory, PlacementRequirements, ResourceUnit, Resources};

    use super::*;

    fn group(millis: u64, gib: u64, count: u32) -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            requirements: PlacementRequirements::default(),
            resources: vec![ResourceUnit {
                resources: Resources {
                    id: 1,
                    cpu: Cpu {
                        millis,
                        attributes: vec![],
                    },
                    memory: Memory {
                        bytes: gib << 30,
                        attributes: vec![],
                    },
                    ..Default::default()
                },
                count,
                price: DecCoin::new("ukumo", Dec::from_int(1_000_000)),
            }],
        }
    }

    #[test]
    fn linear_price_scales_with_each_resource_and_count() {
        let cfg = PricingConfig {
            cpu_per_core: Dec::from_int(100),
            memory_per_gib: Dec::from_int(10),
            ..PricingConfig::default()
        };
        assert_eq!(
            linear(&cfg, &group(500, 2, 1), &[]).unwrap(),
            Dec::from_int(70)
        );
        assert_eq!(
            linear(&cfg, &group(500, 2, 3), &[]).unwrap(),
            Dec::from_int(210)
        );
    }

    fn gpu(model: &str) -> kumo_gpu::GpuDevice {
        kumo_gpu::GpuDevice {
            index: 0,
            uuid: "GPU-0".into(),
            vendor: "nvidia".into(),
            model: model.into(),
            memory_bytes: 80 << 30,
            interface: kumo_gpu::Interface::Sxm,
            pci_bus_id: None,
        }
    }

    #[test]
    fn gpus_are_priced_by_model_and_an_unpriced_model_gets_no_price() {
        let mut cfg = PricingConfig {
            cpu_per_core: Dec::from_int(100),
            memory_per_gib: Dec::from_int(10),
            ..PricingConfig::default()
        };
        cfg.gpu_per_model.insert("h100".into(), Dec::from_int(1000));
        cfg.gpu_per_model.insert("a100".into(), Dec::from_int(400));
        let g = group(500, 2, 1);
        assert_eq!(
            linear(&cfg, &g, &[gpu("h100"), gpu("h100"), gpu("a100")]).unwrap(),
            Dec::from_int(70 + 2400)
        );
        let e = linear(&cfg, &g, &[gpu("t4")]).unwrap_err();
        assert!(e.to_string().contains("\"t4\""), "{e}");
        cfg.gpu_per_model
            .insert("default".into(), Dec::from_int(50));
        assert_eq!(linear(&cfg, &g, &[gpu("t4")]).unwrap(), Dec::from_int(120));
    }

    fn order() -> OrderId {
        OrderId {
            owner: Address([1; 20]),
            dseq: 1,
            gseq: 1,
            oseq: 1,
        }
    }

    async fn run_script(body: &str, timeout: Duration) -> Result<DecCoin, PricingError> {
        let cfg = PricingConfig {
            strategy: "script".into(),
            script: vec!["sh".into(), "-c".into(), body.into()],
            script_timeout: timeout,
            ..PricingConfig::default()
        };
        let max = DecCoin::new("ukumo", Dec::from_int(1000));
        price(&cfg, &order(), &group(1000, 1, 1), &[gpu("h100")], &max).await
    }

    #[tokio::test]
    async fn script_reads_the_order_and_its_answer_is_the_price() {
        // The script sees the order's JSON: it answers 42 only when the denom and the reserved
        // GPU are in it.
        let p = run_script(
            "grep '\"denom\":\"ukumo\"' | grep -q '\"model\":\"h100\",\"ram\":\"80Gi\",\"interface\":\"sxm\",\"count\":1' && echo 42.5",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(p.amount, "42.5".parse().unwrap());
    }

    #[tokio::test]
    async fn crashing_slow_or_garbage_scripts_give_no_price() {
        let e = run_script("echo oops >&2; exit 3", Duration::from_secs(5)).await;
        assert!(matches!(e, Err(PricingError::Failed { .. })), "{e:?}");
        let e = run_script("echo lots", Duration::from_secs(5)).await;
        assert!(matches!(e, Err(PricingError::Garbage(_))), "{e:?}");
        let start = std::time::Instant::now();
        let e = run_script("sleep 30; echo 1", Duration::from_millis(300)).await;
        assert!(matches!(e, Err(PricingError::Timeout(_))), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
