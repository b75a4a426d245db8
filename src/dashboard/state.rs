//! The dashboard's shared state: the operator's stores, the token, the origin and `Host`
//! values it answers to, the cookie's name, and the page templates (built in).

use anyhow::Context;
use minijinja::Environment;

use crate::ops::OperatorStores;

/// The dashboard's shared state: the stores, the token, the origin and the templates.
pub struct Dashboard {
    pub stores: OperatorStores,
    pub(super) token: String,
    /// `http://127.0.0.1:PORT`: the only `Origin` a change may come from.
    pub(super) origin: String,
    /// `Host` values that name this listener.
    pub(super) hosts: Vec<String>,
    pub(super) cookie: String,
    pub(super) templates: Environment<'static>,
}

pub(super) fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    // A field the templates print that the view does not have is an error, not an empty cell.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("index.html", include_str!("templates/index.html")),
        ("app.html", include_str!("templates/app.html")),
        ("live.html", include_str!("templates/live.html")),
        ("confirm.html", include_str!("templates/confirm.html")),
    ] {
        env.add_template(name, source)
            .with_context(|| format!("dashboard template {name}"))?;
    }
    Ok(env)
}
