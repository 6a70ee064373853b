//! One module per command family; each resolves its settings, does the work, and reports through `ui`.

pub(crate) mod expose;
pub(crate) mod login;
pub(crate) mod reach;
pub(crate) mod services;
