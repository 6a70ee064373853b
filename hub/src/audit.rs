//! What the audit log records: one typed action per kind of event, written as the dotted name the
//! store keeps (`share.join_failed`) and `pconnect-hub audit` shows.

/// An audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    MemberAdd,
    MemberRemove,
    MemberToken,
    ShareCreate,
    ShareUpdate,
    ShareRevoke,
    ShareJoin,
    /// A wrong or dead share code; the join rate limiter counts these.
    ShareJoinFailed,
    LinkCreate,
    LinkUpdate,
    LinkRevoke,
    DebugStart,
    DebugStop,
}

impl AuditAction {
    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::MemberAdd => "member.add",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::MemberToken => "member.token",
            AuditAction::ShareCreate => "share.create",
            AuditAction::ShareUpdate => "share.update",
            AuditAction::ShareRevoke => "share.revoke",
            AuditAction::ShareJoin => "share.join",
            AuditAction::ShareJoinFailed => "share.join_failed",
            AuditAction::LinkCreate => "link.create",
            AuditAction::LinkUpdate => "link.update",
            AuditAction::LinkRevoke => "link.revoke",
            AuditAction::DebugStart => "debug.start",
            AuditAction::DebugStop => "debug.stop",
        }
    }
}
