//! One module per command family; each resolves its settings, does the work, and reports through `ui`.

pub(crate) mod clone;
pub(crate) mod debug;
pub(crate) mod detach;
pub(crate) mod expose;
pub(crate) mod init;
pub(crate) mod join;
pub(crate) mod links;
pub(crate) mod login;
pub(crate) mod plan;
pub(crate) mod publish;
pub(crate) mod reach;
pub(crate) mod services;
pub(crate) mod share;
pub(crate) mod up;
