//! From a request to a start: the request shared by the ranks of a run (rank 0's options
//! or `config.json`, checked on every rank), and the run folder opened, or resumed with its
//! state handed from rank 0 to the others (`share.rs`).

use super::share::{decode_start, encode_start};
use super::{create_run_dir, read_config, resume, write_config, Checked, Request, RunConfig, Start};
use crate::data::Dataset;
use crate::dist::World;
use crate::error::TrainerError;
use petal_model::Network;

/// The request and its checks on every rank. `read` reads the options or a resumed run's
/// `config.json` and checks them; over several ranks rank 0 alone runs it (the others may
/// not have the run folder) and sends the request, which the others check with `check`
/// against their own data folders.
pub fn share_request(
    world: &World,
    read: impl FnOnce() -> Result<(Request, Checked), TrainerError>,
    check: impl FnOnce(&Request) -> Result<Checked, TrainerError>,
) -> Result<(Request, Checked), TrainerError> {
    if world.ranks() == 1 {
        return read();
    }
    let first = world.agree(if world.is_root() {
        read().map(Some)
    } else {
        Ok(None)
    })?;
    let mut bytes = match &first {
        Some((r, _)) => {
            serde_json::to_vec(&(&r.cfg, r.dir.to_string_lossy(), r.resuming)).expect("request serializes")
        }
        None => Vec::new(),
    };
    world.broadcast(&mut bytes);
    let mine = match first {
        Some(both) => Ok(both),
        None => serde_json::from_slice::<(RunConfig, String, bool)>(&bytes)
            .map_err(|e| TrainerError::Usage(format!("the request rank 0 sent is not valid: {e}")))
            .and_then(|(cfg, dir, resuming)| {
                // Rank 0's run folder (written by rank 0 alone; named in messages).
                let req = Request {
                    cfg,
                    dir: dir.into(),
                    resuming,
                };
                check(&req).map(|c| (req, c))
            }),
    };
    world.agree(mine)
}

/// The start of training: for a resumed run its folder's checkpoint (or `net` when it has
/// none yet); for a new one `net`, in a new run folder holding `config.json`. Over several
/// ranks, rank 0 opens the folder and a resumed run's state goes from it to the others.
pub fn open_run(
    req: &Request,
    cfg: &RunConfig,
    tr: &Dataset,
    mut net: Network,
    world: &World,
) -> Result<Start, TrainerError> {
    // The optimizer whose state the run's optimizer files hold (checked on resume).
    net.set_optimizer_state(cfg.recipe.optimizer_kind(), 0);
    if world.ranks() == 1 {
        return open_folder(req, cfg, tr, net);
    }
    let fresh = net.clone();
    let opened = if world.is_root() {
        open_folder(req, cfg, tr, net).map(Some)
    } else {
        Ok(None)
    };
    let opened = world.agree(opened)?;
    if !req.resuming {
        return Ok(Start::fresh(fresh));
    }
    let mut bytes = match opened {
        Some(mut start) => encode_start(&mut start),
        None => Vec::new(),
    };
    world.broadcast(&mut bytes);
    world.agree(decode_start(&bytes, fresh))
}

fn open_folder(req: &Request, cfg: &RunConfig, tr: &Dataset, net: Network) -> Result<Start, TrainerError> {
    let dir = &req.dir;
    if !req.resuming {
        create_run_dir(dir)?;
        write_config(dir, cfg)?;
        return Ok(Start::fresh(net));
    }
    let start = resume(dir, &tr.classes, net)?;
    // The options a resumed run changed (`--epochs`, `--checkpoint-every`, ...), recorded.
    if read_config(dir)? != *cfg {
        write_config(dir, cfg)?;
    }
    Ok(start)
}
