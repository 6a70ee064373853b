//! Issue 15, install and deploy: an operator runs a hub from the repo's Dockerfile, from
//! deploy/compose.yml or with deploy/pconnect-hub.service, and release binaries ship stripped with
//! their debug info beside them. No container runtime or running systemd is needed: each file is
//! read, the command it would run starts a real hub on loopback (addresses and data directory
//! swapped), the image's healthcheck is pointed at it, and `systemd-analyze` and `docker compose
//! config` check the files too when they are installed (the test says SKIPPED for each one missing).

#[path = "deploy/files.rs"]
mod files;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use files::{Stage, exec_form, flag, port_of, seconds};
use pconnect_e2e::{HUB, HubInfo, Proc, bin, describe_output, free_port, output_with_timeout, which, workspace_root};
use tempfile::TempDir;

const READY: Duration = Duration::from_secs(30);
/// systemd-analyze, docker compose, objcopy on a debug build: each well under this.
const TOOL: Duration = Duration::from_secs(120);
/// The hub's drain on SIGTERM when `--grace` is not given.
const DEFAULT_GRACE_SECS: u64 = 10;
/// Open files a deployment should allow at least (each link, tunnel and ingress connection is one).
const MIN_NOFILE: u64 = 65_536;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

#[allow(clippy::print_stderr)]
fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

fn run(cmd: &mut Command) -> Output {
    output_with_timeout(cmd, TOOL).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A hub started from a deployment file's command line, on loopback, with a temporary data dir.
struct Started {
    // The process is dropped (killed) before its data directory is removed.
    _proc: Proc,
    info: HubInfo,
    _data: TempDir,
}

/// Runs `pconnect-hub <args>` with every listen address replaced by `127.0.0.1:0` and `--data`
/// by a temporary directory, and waits until it is ready.
fn start_like(args: &[String]) -> Started {
    let data = tempfile::Builder::new().prefix("pconnect-e2e-deploy-").tempdir().unwrap();
    let mut args = args.to_vec();
    for i in 1..args.len() {
        match args[i - 1].as_str() {
            "--listen" | "--http" | "--https" => args[i] = "127.0.0.1:0".into(),
            "--data" => args[i] = data.path().display().to_string(),
            _ => {}
        }
    }
    let mut cmd = Command::new(bin(HUB));
    cmd.args(&args).env("NO_COLOR", "1");
    let mut proc = Proc::spawn(cmd).unwrap();
    proc.wait_for_line("Hub ready", READY).unwrap_or_else(|e| panic!("`pconnect-hub {}`: {e:#}", args.join(" ")));
    let lines = proc.lines();
    let info = HubInfo::parse(lines.iter().map(|l| l.text.as_str())).unwrap();
    Started { _proc: proc, info, _data: data }
}

/// deploy/healthcheck, the image's HEALTHCHECK, run as Docker runs it (exec, no shell).
fn healthcheck(port: u16) -> Output {
    run(Command::new(workspace_root().join("deploy/healthcheck")).arg(port.to_string()))
}

fn dockerfile() -> Vec<Stage> {
    files::dockerfile(&read("Dockerfile"))
}

/// The runtime stage's ENTRYPOINT + CMD, and its HEALTHCHECK CMD.
fn image_command(runtime: &Stage) -> (Vec<String>, Vec<String>) {
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"));
    assert_eq!(entrypoint, [HUB], "the image runs the hub binary");
    let cmd = exec_form(runtime.last("CMD").expect("CMD"));
    let check = runtime.last("HEALTHCHECK").expect("HEALTHCHECK");
    let (_, check) = check.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    (cmd, exec_form(check))
}

#[test]
fn the_image_runs_as_a_user_from_files_the_build_context_has() {
    let stages = dockerfile();
    let ignore = files::dockerignore(&read(".dockerignore"));
    for excluded in ["target", ".git", "dist"] {
        assert!(files::ignored(&ignore, excluded), ".dockerignore must leave out {excluded}/");
    }
    for stage in &stages {
        for copy in stage.all("COPY").into_iter().map(files::copy).filter(|c| c.from.is_none()) {
            for source in &copy.sources {
                if source == "." {
                    continue;
                }
                assert!(workspace_root().join(source).exists(), "COPY {source}: no such file in the build context");
                assert!(!files::ignored(&ignore, source), "COPY {source}: .dockerignore leaves it out");
            }
        }
    }

    // Built with the workspace's Rust on the same Debian release the runtime image uses (glibc).
    let build = stages.iter().find(|s| s.name.as_deref() == Some("build")).expect("a stage named `build`");
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = ").map(|v| v.trim_matches('"').to_owned()))
        .expect("rust-version in Cargo.toml");
    assert!(
        build.image.starts_with(&format!("rust:{rust_version}-")),
        "build image {} is not Rust {rust_version}",
        build.image
    );
    let runtime = stages.last().unwrap();
    let debian = |image: &str| ["bullseye", "bookworm", "trixie"].into_iter().find(|r| image.contains(r));
    assert!(debian(&build.image).is_some(), "build image {} names no Debian release", build.image);
    assert_eq!(debian(&build.image), debian(&runtime.image), "build and runtime images are different Debian releases");

    // The build stage makes the binary with deploy/dist; the runtime stage copies exactly that.
    let workdir = build.last("WORKDIR").expect("WORKDIR in the build stage");
    assert!(
        build.all("RUN").iter().any(|r| r.ends_with("deploy/dist pconnect-hub")),
        "the build stage runs deploy/dist"
    );
    let binary = runtime
        .all("COPY")
        .into_iter()
        .map(files::copy)
        .find(|c| c.from.as_deref() == Some("build") && c.dest == format!("/usr/local/bin/{HUB}"))
        .expect("the runtime stage copies the hub binary from the build stage");
    assert_eq!(binary.sources, [format!("{workdir}/dist/{HUB}")], "not what deploy/dist writes");

    // Not root, and the user exists in the image.
    let user = runtime.last("USER").expect("USER in the runtime stage");
    let name = user.split(':').next().unwrap();
    assert!(!["root", "0"].contains(&name), "the hub runs as root");
    assert!(runtime.all("RUN").iter().any(|r| r.contains("useradd") && r.contains(name)), "no useradd for {name}");

    // The command keeps its state in the volume and listens on the exposed ports.
    let (cmd, _) = image_command(runtime);
    assert_eq!(cmd.first().map(String::as_str), Some("serve"));
    assert_eq!(runtime.last("VOLUME"), flag(&cmd, "--data"), "--data is not the VOLUME");
    let exposed: Vec<u16> =
        runtime.all("EXPOSE").iter().flat_map(|e| e.split_whitespace()).map(|p| p.parse().unwrap()).collect();
    for listen in ["--listen", "--http"] {
        let port = port_of(flag(&cmd, listen).unwrap_or_else(|| panic!("CMD sets no {listen}")));
        assert!(exposed.contains(&port), "{listen} port {port} is not EXPOSEd ({exposed:?})");
    }
}

#[test]
fn the_images_command_starts_a_hub_its_healthcheck_sees() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let (cmd, check) = image_command(runtime);
    // The healthcheck program is deploy/healthcheck, copied under the name HEALTHCHECK runs, and
    // it asks the port the hub serves /healthz on.
    let copied = runtime
        .all("COPY")
        .into_iter()
        .map(files::copy)
        .find(|c| c.sources == ["deploy/healthcheck"])
        .expect("the runtime stage copies deploy/healthcheck");
    assert_eq!(Path::new(&copied.dest).file_name().unwrap().to_str(), check.first().map(String::as_str));
    assert_eq!(check.get(1).map(|p| p.parse::<u16>().unwrap()), Some(port_of(flag(&cmd, "--http").unwrap())));

    let hub = start_like(&cmd);
    let port = port_of(&hub.info.http_url);
    let out = healthcheck(port);
    assert!(out.status.success(), "healthcheck failed against a ready hub\n{}", describe_output(&out));

    let nothing = free_port();
    let out = healthcheck(nothing);
    assert!(!out.status.success(), "healthcheck passed with nothing on port {nothing}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"), "{}", describe_output(&out));
    drop(hub);
}

#[test]
fn compose_runs_the_image_with_a_volume_its_ports_and_the_healthcheck() {
    let text = read("deploy/compose.yml");
    let compose: serde_json::Value = serde_saphyr::from_str(&text).expect("deploy/compose.yml parses");
    let hub = &compose["services"]["hub"];
    assert!(hub.is_object(), "deploy/compose.yml has no `hub` service");

    // Built from this repository's Dockerfile, tagged as the README says.
    let context = workspace_root().join("deploy").join(hub["build"]["context"].as_str().expect("build.context"));
    let dockerfile = hub["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert_eq!(context.canonicalize().unwrap(), workspace_root().canonicalize().unwrap(), "build.context");
    assert!(context.join(dockerfile).is_file(), "build.dockerfile {dockerfile} does not exist");
    assert!(hub["image"].as_str().is_some_and(|i| i.starts_with("pconnect-hub")), "image: {}", hub["image"]);

    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("{v} is not a list"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let command: Vec<String> =
        strings(&hub["command"]).iter().map(|a| files::interpolate(a, &BTreeMap::new())).collect();
    assert_eq!(command.first().map(String::as_str), Some("serve"));

    // State in a named volume mounted at --data.
    let data = flag(&command, "--data").expect("--data");
    assert!(strings(&hub["volumes"]).contains(&format!("data:{data}")), "no `data:{data}` volume");
    assert!(compose["volumes"].get("data").is_some(), "top-level `volumes:` does not declare `data`");

    // Both ports published, and they are the ones the command listens on and the image exposes.
    let ports = strings(&hub["ports"]);
    let image_ports = files::dockerfile(&read("Dockerfile")).last().unwrap().all("EXPOSE").join(" ");
    for listen in ["--listen", "--http"] {
        let port = port_of(flag(&command, listen).unwrap_or_else(|| panic!("command sets no {listen}")));
        assert!(ports.contains(&format!("{port}:{port}")), "{listen} port {port} not published ({ports:?})");
        assert!(image_ports.split_whitespace().any(|p| p == port.to_string()), "{port} not EXPOSEd");
    }

    assert!(["always", "unless-stopped", "on-failure"].contains(&hub["restart"].as_str().unwrap_or("no")), "restart");
    let grace = flag(&command, "--grace").map_or(DEFAULT_GRACE_SECS, seconds);
    let stop = hub["stop_grace_period"].as_str().map_or(10, seconds);
    assert!(stop > grace, "stop_grace_period {stop}s does not outlast the hub's --grace {grace}s");
    let nofile = hub["ulimits"]["nofile"]["soft"].as_u64().expect("ulimits.nofile.soft");
    assert!(nofile >= MIN_NOFILE, "ulimits.nofile.soft {nofile}");

    // The healthcheck is the image's.
    let (_, image_check) = image_command(files::dockerfile(&read("Dockerfile")).last().unwrap());
    let test = strings(&hub["healthcheck"]["test"]);
    assert_eq!(test.first().map(String::as_str), Some("CMD"));
    assert_eq!(test[1..], image_check[..], "compose's healthcheck is not the image's");

    // The command starts a hub, and the healthcheck sees it.
    let started = start_like(&command);
    let out = healthcheck(port_of(&started.info.http_url));
    assert!(out.status.success(), "{}", describe_output(&out));
    drop(started);

    // Compose's own reading, when it is installed (the plugin, or Debian's `docker-compose`).
    let plugin = which("docker").filter(|d| run(Command::new(d).args(["compose", "version"])).status.success());
    let mut config = match (plugin, which("docker-compose")) {
        (Some(docker), _) => {
            let mut cmd = Command::new(docker);
            cmd.arg("compose");
            cmd
        }
        (None, Some(standalone)) => Command::new(standalone),
        (None, None) => {
            skipped("docker compose config", "Docker Compose is not installed; deploy/compose.yml was read as YAML");
            return;
        }
    };
    let out = run(config.current_dir(workspace_root()).args(["-f", "deploy/compose.yml", "config", "--quiet"]));
    assert!(out.status.success(), "docker compose config\n{}", describe_output(&out));
}

#[test]
fn the_systemd_unit_verifies_and_its_command_starts_a_hub() {
    let text = read("deploy/pconnect-hub.service");
    let unit = files::unit(&text);
    let service = unit.get("Service").expect("[Service]");
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("{key}= should be set once in [Service], is {other:?}"),
        }
    };
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // Its own user (or a dynamic one), its own state directory, which is the hub's --data.
    assert!(
        service.get("DynamicUser").is_some_and(|v| v == &["yes"]) || !["", "root", "0"].contains(&one("User")),
        "the hub runs as root"
    );
    let vars: BTreeMap<String, String> = service
        .get("Environment")
        .into_iter()
        .flatten()
        .map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("Environment=KEY=VALUE"))
        .collect();
    let exec: Vec<String> = files::interpolate(one("ExecStart"), &vars).split_whitespace().map(str::to_owned).collect();
    assert_eq!(exec.first().map(String::as_str), Some("/usr/local/bin/pconnect-hub"), "ExecStart program");
    assert_eq!(flag(&exec, "--data"), Some(format!("/var/lib/{}", one("StateDirectory")).as_str()), "--data");

    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(nofile >= MIN_NOFILE, "LimitNOFILE={nofile}");
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(key), want, "{key}=");
    }
    let grace = flag(&exec, "--grace").map_or(DEFAULT_GRACE_SECS, seconds);
    let stop = seconds(one("TimeoutStopSec"));
    assert!(stop > grace, "TimeoutStopSec={stop}s does not outlast the hub's --grace {grace}s");

    // The command line is one the hub accepts.
    let started = start_like(&exec[1..]);
    let out = healthcheck(port_of(&started.info.http_url));
    assert!(out.status.success(), "{}", describe_output(&out));
    drop(started);

    // systemd's own reading: `verify` (ExecStart must exist, so a copy points at the built hub)
    // and `security`, which fails when the hardening score drops below what it is today.
    let Some(analyze) = which("systemd-analyze") else {
        skipped("systemd-analyze verify", "systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pconnect-hub.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/pconnect-hub", &bin(HUB).display().to_string())).unwrap();
    let out = run(Command::new(&analyze).args(["verify", "--man=no"]).arg(&copy));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("pconnect-hub.service")).collect();
    assert!(out.status.success() && about_ours.is_empty(), "systemd-analyze verify\n{}", describe_output(&out));
    // Exposure 1.4 today (0 best, 10 worst); --threshold fails above 2.0.
    let out =
        run(Command::new(&analyze).args(["security", "--offline=yes", "--threshold=20", "--no-pager"]).arg(&copy));
    assert!(out.status.success(), "systemd-analyze security\n{}", describe_output(&out));
}

#[test]
fn release_binaries_keep_their_debug_info_beside_them() {
    // `deploy/dist` builds a profile with line tables and splits them off with deploy/split-debug.
    let dist = read("deploy/dist");
    assert!(dist.contains("--profile dist") && dist.contains("deploy/split-debug"), "deploy/dist");
    let cargo = read("Cargo.toml");
    let profile = cargo.split("[profile.dist]").nth(1).expect("[profile.dist] in Cargo.toml");
    let profile = profile.split("\n[").next().unwrap();
    assert!(profile.contains("debug = \"line-tables-only\""), "[profile.dist] has no line tables to split off");

    let (Some(_), Some(readelf)) = (which("objcopy"), which("readelf")) else {
        skipped("split-debug", "objcopy or readelf is not installed (apt-get install binutils)");
        return;
    };
    // The dev build of the hub has full debug info: split it as a release would.
    let hub = bin(HUB);
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(workspace_root().join("deploy/split-debug")).arg(&hub).arg(out_dir.path()));
    assert!(out.status.success(), "deploy/split-debug\n{}", describe_output(&out));
    let stripped = out_dir.path().join(HUB);
    let debug = out_dir.path().join(format!("{HUB}.debug"));

    let readelf = |args: &[&str], file: &Path| {
        let out = run(Command::new(&readelf).args(args).arg(file));
        assert!(out.status.success(), "readelf {args:?} {}\n{}", file.display(), describe_output(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sections = |file: &Path| -> Vec<String> {
        readelf(&["-SW"], file)
            .lines()
            .filter_map(|l| l.split_once(']').map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned()))
            .collect()
    };
    let build_id = |file: &Path| readelf(&["-n"], file).lines().find(|l| l.contains("Build ID")).map(str::to_owned);

    let kept = sections(&stripped);
    assert!(!kept.iter().any(|s| s == ".debug_info" || s == ".debug_line"), "still has debug info: {kept:?}");
    assert!(kept.iter().any(|s| s == ".symtab"), "the symbol table (function names in backtraces) was dropped");
    assert!(readelf(&["--string-dump=.gnu_debuglink"], &stripped).contains(&format!("{HUB}.debug")), "no debuglink");
    let split = sections(&debug);
    assert!(split.iter().any(|s| s == ".debug_line") && split.iter().any(|s| s == ".debug_info"), "{split:?}");
    assert_eq!(build_id(&stripped), build_id(&hub), "build-id changed");
    assert_eq!(build_id(&debug), build_id(&hub), "the debug file's build-id is not the binary's");

    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&stripped) < size(&hub) / 2, "{} -> {} bytes", size(&hub), size(&stripped));
    let out = run(Command::new(&stripped).arg("--version"));
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(HUB), "{}", describe_output(&out));
}
