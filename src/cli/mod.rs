//! The `updraft` command line: parse (`args`), open the backend once (`OpArgs`), call the
//! operation, print its result (`output`, `render`). Nothing here decides anything: the
//! operations live in `ops`.
//!
//! - `args`: every command and flag; `specs`: what they become
//! - `output`: printing a result as text or `--json`
//! - `render`: the tables and status lines of listings
//! - `serve`: `updraft serve`; `dashboard`: `updraft dashboard`

pub mod args;
mod dashboard;
mod output;
mod render;
mod serve;
mod specs;

pub use args::Cli;

use crate::cli::args::{
    AppCommand, BundlesCommand, ChannelCommand, Command, DeviceCommand, DevicePlatformArg,
    RolloutCommand,
};
use crate::cli::output::Report;
use crate::cli::specs::target_of;
use crate::ops::OperatorStores;
use crate::ops::errors::explain;
use crate::ops::rollouts::RolloutAction;
use crate::ops::{
    apps, bundles, channels, devices, explain as why, health, history, pauses, publish, repoint,
    rollouts,
};

/// Runs a parsed command line. Errors come back as one sentence (`ops::errors::explain`);
/// with `--json` they are also printed as `{"error", "message"}` on stdout.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve(args) = cli.command {
        return serve::serve(args)
            .await
            .map_err(|e| anyhow::anyhow!(explain(&e)));
    }
    let (op, name, create) = cli.command.op();
    let json = op.json;
    let result = async {
        if let Command::Dashboard(args) = &cli.command
            && let Some(addr) = args.addr
        {
            crate::dashboard::require_loopback(addr)?;
        }
        let stores = op.store.backend()?.operator_stores(create, json).await?;
        if let Command::Dashboard(args) = &cli.command {
            dashboard::dashboard(args, stores).await?;
            return Ok(None);
        }
        execute(&cli.command, &stores).await.map(Some)
    }
    .await;
    match result {
        Ok(Some(report)) => {
            report.print(json);
            Ok(())
        }
        // The dashboard printed its one line when it started.
        Ok(None) => Ok(()),
        Err(e) => {
            let message = explain(&e);
            if json {
                let error =
                    serde_json::json!({ "error": format!("{name}_failed"), "message": message });
                Report::new(&error, "")?.print(true);
            }
            Err(anyhow::anyhow!(message))
        }
    }
}

/// One operator command on opened stores.
async fn execute(command: &Command, stores: &OperatorStores) -> anyhow::Result<Report> {
    match command {
        Command::Serve(_) | Command::Dashboard(_) => unreachable!("handled by run"),
        Command::Release(a) => Report::sentence(&publish::publish(stores, a.spec()?).await?),
        Command::Rollback(a) => {
            let r = &a.release;
            let target = target_of(r.platform);
            let to = a.to.as_deref();
            Report::sentence(&repoint::rollback(stores, &r.app.app, &r.channel, target, to).await?)
        }
        Command::Promote(a) => {
            let target = target_of(a.platform);
            Report::sentence(&repoint::promote(stores, &a.app.app, &a.from, &a.to, target).await?)
        }
        Command::History(a) => {
            let rows = history::history(stores, &a.app.app, a.channel.as_deref(), a.limit).await?;
            render::history(&a.app.app, &rows)
        }
        Command::Channel(c) => channel(c, stores).await,
        Command::App(AppCommand::Set(a)) => {
            let platform = a.platform.map(DevicePlatformArg::platform);
            let set = apps::app_set(stores, &a.app.app, &a.default_channel, platform).await?;
            Report::sentence(&set)
        }
        Command::App(AppCommand::List(_)) => render::app_list(&apps::app_list(stores).await?),
        Command::Bundles(BundlesCommand::List(a)) => {
            render::bundles(&a.app, &bundles::list(stores, &a.app).await?)
        }
        Command::Bundles(BundlesCommand::Delete(a)) => {
            Report::sentence(&bundles::delete(stores, &a.app.app, &a.version).await?)
        }
        Command::Stats(a) => render::stats(&a.app, &health::stats(stores, &a.app).await?),
        Command::Pause(a) => {
            let r = &a.release;
            let target = target_of(r.platform);
            let done = pauses::pause(stores, &r.app.app, &r.channel, target, &a.reason).await?;
            Report::sentence(&done)
        }
        Command::Resume(r) => {
            let target = target_of(r.platform);
            Report::sentence(&pauses::resume(stores, &r.app.app, &r.channel, target).await?)
        }
        Command::Device(c) => device(c, stores).await,
        Command::Rollout(c) => rollout(c, stores).await,
        Command::Explain(a) => {
            let q = a.question();
            let out = why::explain(stores, &q).await?;
            render::explain(&q.app_id, &q.device_id, q.platform.as_str(), &out)
        }
    }
}

async fn channel(command: &ChannelCommand, stores: &OperatorStores) -> anyhow::Result<Report> {
    match command {
        ChannelCommand::Set(a) => {
            let rows = channels::channel_set(
                stores,
                &a.app.app,
                &a.channel,
                a.platform.map(target_of),
                &a.policy.to_item()?,
                a.expect_revision,
            )
            .await?;
            render::channel_set(&rows)
        }
        ChannelCommand::List(a) => {
            render::channel_list(&channels::channel_list(stores, &a.app).await?)
        }
    }
}

async fn device(command: &DeviceCommand, stores: &OperatorStores) -> anyhow::Result<Report> {
    match command {
        DeviceCommand::SetChannel(a) => {
            let d = &a.device;
            let set = devices::set_channel(stores, &d.app.app, &d.device, &a.channel).await?;
            Report::sentence(&set)
        }
        DeviceCommand::UnsetChannel(d) => {
            Report::sentence(&devices::unset_channel(stores, &d.app.app, &d.device).await?)
        }
        DeviceCommand::Show(d) => {
            render::device(&devices::show(stores, &d.app.app, &d.device).await?)
        }
        DeviceCommand::MarkOverrides(_) => {
            Report::sentence(&devices::mark_overrides(stores).await?)
        }
    }
}

async fn rollout(command: &RolloutCommand, stores: &OperatorStores) -> anyhow::Result<Report> {
    let (r, action) = match command {
        RolloutCommand::Status(r) => {
            let target = target_of(r.platform);
            let status = rollouts::rollout_status(stores, &r.app.app, &r.channel, target).await?;
            return render::rollout_status(&status);
        }
        RolloutCommand::Tick(a) => {
            return render::tick(&rollouts::tick(stores, a.app.as_deref()).await?);
        }
        RolloutCommand::Set(a) => {
            let bp = crate::domain::share::parse_percent(a.percent)
                .map_err(|e| anyhow::anyhow!("--percent {e}"))?;
            (&a.release, RolloutAction::Set(bp))
        }
        RolloutCommand::Pause(r) => (r, RolloutAction::Pause),
        RolloutCommand::Resume(r) => (r, RolloutAction::Resume),
        RolloutCommand::Abort(r) => (r, RolloutAction::Abort),
        RolloutCommand::Complete(r) => (r, RolloutAction::Complete),
    };
    let target = target_of(r.platform);
    let changed = rollouts::rollout_change(stores, &r.app.app, &r.channel, target, action).await?;
    Report::sentence(&changed)
}
