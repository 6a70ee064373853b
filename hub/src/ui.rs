//! Everything `pconnect-hub` prints: the only module allowed to write to stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::HubInfo;
use crate::store::Member;

/// The start banner; tests and scripts read the addresses from it, `[ok] Hub ready` comes last.
pub fn serving(info: &HubInfo) {
    println!("pconnect-hub {}", env!("CARGO_PKG_VERSION"));
    println!("  Agents:      https://{}", info.agents);
    println!("  HTTP:        http://{}", info.http);
    if let Some(https) = info.https {
        println!("  HTTPS:       https://{https}");
    }
    println!("  Fingerprint: {}", info.fingerprint);
    println!("[ok] Hub ready");
}

pub fn member_added(member: &Member, token: &str) {
    println!("[ok] Member {} added to workspace {}.", member.name, member.workspace);
    println!("Their token (shown once; they run `connect login --hub <url> --token <token>`):");
    println!("{token}");
}

pub fn members(members: &[Member]) {
    if members.is_empty() {
        println!("No members yet. Add one with: pconnect-hub member add <name> --data <dir>");
        return;
    }
    println!("Members of workspace {}:", members[0].workspace);
    for m in members {
        let role = if m.is_admin { " (admin)" } else { "" };
        println!("  • {}{role}", m.name);
    }
}

pub fn member_removed(name: &str, hub_confirmed: bool) {
    println!("[ok] Member {name} removed; their token no longer works.");
    if !hub_confirmed {
        println!("(No running hub answered on this data dir; agents are refused when they next connect.)");
    }
}

pub fn error(e: &anyhow::Error) {
    eprintln!("[!] {e:#}");
}
