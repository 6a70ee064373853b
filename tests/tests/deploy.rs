//! Issue 15, install and deploy: an operator runs a hub from the repo's Dockerfile, from
//! deploy/compose.yml or with deploy/pconnect-hub.service, and release binaries ship stripped with
//! their debug info beside them. No container runtime or running systemd is needed: each file is
//! read, the hub starts on loopback with that file's arguments and variables (addresses and data
//! directory swapped), the image's healthcheck is pointed at it, and `systemd-analyze` and
//! `docker compose config` check the files too when installed (the test says SKIPPED otherwise).

#[path = "deploy/files.rs"]
mod files;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use files::{Stage, exec_form, port_of, seconds};
use pconnect_e2e::{
    HUB, HubInfo, Proc, bin, describe_output, free_port, http_get, listen_port, output_with_timeout, which,
    workspace_root,
};
use tempfile::TempDir;

const READY: Duration = Duration::from_secs(30);
/// systemd-analyze, docker compose, objcopy on a debug build: each well under this.
const TOOL: Duration = Duration::from_secs(120);
/// Open files a deployment should allow at least (each link, tunnel and ingress connection is one).
const MIN_NOFILE: u64 = 65_536;
/// Listen flags: a test run binds them all to `127.0.0.1:0`.
const ADDRESSES: [&str; 4] = ["--listen", "--http", "--https", "--metrics"];

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

/// `pconnect-hub` with no PCONNECT_* variable of the test's own environment.
fn hub_command() -> Command {
    let mut cmd = Command::new(bin(HUB));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PCONNECT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// What `pconnect-hub serve --help` says of each flag: its variable and its default.
struct Flags(BTreeMap<String, (Option<String>, Option<String>)>);

impl Flags {
    fn read() -> Flags {
        let out = run(hub_command().args(["serve", "--help"]));
        assert!(out.status.success(), "{}", describe_output(&out));
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let bracket = |text: &str, tag: &str| {
            let start = text.find(tag)? + tag.len();
            Some(text[start..].split(']').next()?.trim_end_matches('=').to_owned())
        };
        let mut flags = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        // A flag's line starts with `-`; the lines below it, up to the next flag, describe it.
        for line in help.lines().chain(["--end"]) {
            let trimmed = line.trim_start();
            if trimmed.starts_with('-') {
                if let Some((name, text)) = current.take() {
                    flags.insert(name, (bracket(&text, "[env: "), bracket(&text, "[default: ")));
                }
                let flag = trimmed.split_whitespace().find(|w| w.starts_with("--"));
                current = flag.map(|f| (f.trim_end_matches(',').to_owned(), trimmed.to_owned()));
            } else if let Some((_, text)) = &mut current {
                text.push(' ');
                text.push_str(trimmed);
            }
        }
        Flags(flags)
    }

    /// The variable of `flag` (every `serve` flag has one).
    fn var(&self, flag: &str) -> &str {
        self.0.get(flag).and_then(|(var, _)| var.as_deref()).unwrap_or_else(|| panic!("`serve {flag}` has no variable"))
    }
}

/// How a deployment file starts the hub: the arguments after the program, and its variables.
struct Launch {
    what: &'static str,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Launch {
    /// A `serve` setting as the hub resolves it here: the flag, else its variable, else the
    /// default (none of the files names a config file).
    fn setting(&self, flags: &Flags, flag: &str) -> Option<String> {
        files::flag(&self.args, flag)
            .map(str::to_owned)
            .or_else(|| self.env.get(flags.var(flag)).cloned())
            .or_else(|| flags.0.get(flag).and_then(|(_, default)| default.clone()))
    }

    fn port(&self, flags: &Flags, flag: &str) -> u16 {
        port_of(&self.setting(flags, flag).unwrap_or_else(|| panic!("{}: no {flag}", self.what)))
    }

    /// Starts the hub as the file would, on loopback: every address `127.0.0.1:0`, `--data` a
    /// temporary directory. Variables the hub does not know fail the test (it would ignore them).
    fn start(&self, flags: &Flags) -> Started {
        let known: Vec<&str> = flags.0.values().filter_map(|(var, _)| var.as_deref()).collect();
        for name in self.env.keys().filter(|n| n.starts_with("PCONNECT_")) {
            assert!(
                known.contains(&name.as_str()),
                "{} sets {name}, which `pconnect-hub serve` does not read",
                self.what
            );
        }
        let data = tempfile::Builder::new().prefix("pconnect-e2e-deploy-").tempdir().unwrap();
        let temp = data.path().display().to_string();
        let mut args = self.args.clone();
        for i in 1..args.len() {
            match args[i - 1].as_str() {
                flag if ADDRESSES.contains(&flag) => args[i] = "127.0.0.1:0".into(),
                "--data" => args[i].clone_from(&temp),
                _ => {}
            }
        }
        let mut env = self.env.clone();
        for flag in ADDRESSES {
            let var = flags.var(flag);
            if env.contains_key(var) || self.setting(flags, flag).is_some() {
                env.insert(var.to_owned(), "127.0.0.1:0".into());
            }
        }
        if let Some(dir) = env.get_mut(flags.var("--data")) {
            dir.clone_from(&temp);
        }
        let mut cmd = hub_command();
        cmd.args(&args).envs(&env);
        let mut proc = Proc::spawn(cmd).unwrap();
        proc.wait_for_line("Hub ready", READY).unwrap_or_else(|e| panic!("{}: {e:#}", self.what));
        let lines = proc.lines();
        let info = HubInfo::parse(lines.iter().map(|l| l.text.as_str())).unwrap();
        let metrics = lines.iter().find(|l| l.text.contains("Metrics:")).and_then(|l| listen_port(&l.text));
        Started { _proc: proc, http: port_of(&info.http_url), metrics, _data: data }
    }
}

/// A hub started from a deployment file, with a temporary data directory.
struct Started {
    // The process is dropped (killed) before its data directory is removed.
    _proc: Proc,
    http: u16,
    metrics: Option<u16>,
    _data: TempDir,
}

/// deploy/healthcheck, the image's HEALTHCHECK, run as Docker runs it (exec, no shell).
fn healthcheck(port: u16) -> Output {
    run(Command::new(workspace_root().join("deploy/healthcheck")).arg(port.to_string()))
}

fn assert_healthy(port: u16) {
    let out = healthcheck(port);
    assert!(out.status.success(), "healthcheck failed against a ready hub\n{}", describe_output(&out));
}

fn dockerfile() -> Vec<Stage> {
    files::dockerfile(&read("Dockerfile"))
}

/// How the image starts the hub (ENTRYPOINT + CMD, ENV), and its HEALTHCHECK CMD.
fn image_launch(runtime: &Stage) -> (Launch, Vec<String>) {
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"));
    assert_eq!(entrypoint.first().map(String::as_str), Some(HUB), "the image runs the hub binary");
    let args = [&entrypoint[1..], &exec_form(runtime.last("CMD").expect("CMD"))[..]].concat();
    let env = runtime.all("ENV").into_iter().flat_map(files::env).collect();
    let check = runtime.last("HEALTHCHECK").expect("HEALTHCHECK");
    let (_, check) = check.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    (Launch { what: "the Dockerfile", args, env }, exec_form(check))
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
            for source in copy.sources.iter().filter(|s| *s != ".") {
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

    // State in the volume, and the ports the hub listens on are exposed.
    let flags = Flags::read();
    let (launch, _) = image_launch(runtime);
    assert_eq!(launch.args.first().map(String::as_str), Some("serve"));
    assert_eq!(runtime.last("VOLUME").map(str::to_owned), launch.setting(&flags, "--data"), "--data is not the VOLUME");
    let exposed: Vec<u16> =
        runtime.all("EXPOSE").iter().flat_map(|e| e.split_whitespace()).map(|p| p.parse().unwrap()).collect();
    for flag in ["--listen", "--http"] {
        let port = launch.port(&flags, flag);
        assert!(exposed.contains(&port), "{flag} port {port} is not EXPOSEd ({exposed:?})");
    }
}

#[test]
fn the_images_command_starts_a_hub_its_healthcheck_sees() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let (launch, check) = image_launch(runtime);
    let flags = Flags::read();
    // The healthcheck program is deploy/healthcheck, copied under the name HEALTHCHECK runs, and
    // it asks the port the hub serves /healthz on.
    let copied = runtime
        .all("COPY")
        .into_iter()
        .map(files::copy)
        .find(|c| c.sources == ["deploy/healthcheck"])
        .expect("the runtime stage copies deploy/healthcheck");
    assert_eq!(Path::new(&copied.dest).file_name().unwrap().to_str(), check.first().map(String::as_str));
    assert_eq!(check.get(1).map(|p| p.parse::<u16>().unwrap()), Some(launch.port(&flags, "--http")));

    let hub = launch.start(&flags);
    assert_healthy(hub.http);
    let nothing = free_port();
    let out = healthcheck(nothing);
    assert!(!out.status.success(), "healthcheck passed with nothing on port {nothing}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"), "{}", describe_output(&out));
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

    // The image's command and variables, with compose's on top (a variable unset outside takes
    // its `${NAME:-default}`).
    let stages = files::dockerfile(&std::fs::read_to_string(context.join(dockerfile)).unwrap());
    let runtime = stages.last().unwrap();
    let (image, image_check) = image_launch(runtime);
    let strings = |v: &serde_json::Value| -> Vec<String> {
        let list = v.as_array().unwrap_or_else(|| panic!("{v} is not a list"));
        list.iter().map(|s| files::interpolate(s.as_str().unwrap(), &BTreeMap::new())).collect()
    };
    let mut launch = Launch { what: "deploy/compose.yml", ..image };
    if !hub["command"].is_null() {
        launch.args = strings(&hub["command"]);
    }
    match &hub["environment"] {
        serde_json::Value::Object(vars) => launch.env.extend(vars.iter().map(|(k, v)| {
            let value = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), files::interpolate(&value, &BTreeMap::new()))
        })),
        serde_json::Value::Null => {}
        list => launch
            .env
            .extend(strings(list).iter().map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())).unwrap())),
    }
    let flags = Flags::read();

    // State in a named volume mounted at --data.
    let data = launch.setting(&flags, "--data").expect("--data");
    assert!(strings(&hub["volumes"]).contains(&format!("data:{data}")), "no `data:{data}` volume");
    assert!(compose["volumes"].get("data").is_some(), "top-level `volumes:` does not declare `data`");

    // The hub's ports published on every address; metrics, when on, for this host only.
    let ports = strings(&hub["ports"]);
    for flag in ["--listen", "--http"] {
        let port = launch.port(&flags, flag);
        assert!(ports.contains(&format!("{port}:{port}")), "{flag} port {port} not published ({ports:?})");
    }
    if launch.setting(&flags, "--metrics").is_some() {
        let port = launch.port(&flags, "--metrics");
        let published: Vec<&String> = ports.iter().filter(|p| p.ends_with(&format!(":{port}"))).collect();
        assert!(!published.is_empty(), "metrics port {port} not published");
        assert!(
            published.iter().all(|p| p.starts_with("127.0.0.1:")),
            "metrics published beyond this host: {published:?}"
        );
    }

    assert!(["always", "unless-stopped", "on-failure"].contains(&hub["restart"].as_str().unwrap_or("no")), "restart");
    let grace = seconds(&launch.setting(&flags, "--grace").expect("--grace has a default"));
    let stop = hub["stop_grace_period"].as_str().map_or(10, seconds);
    assert!(stop > grace, "stop_grace_period {stop}s does not outlast the hub's grace {grace}s");
    let nofile = hub["ulimits"]["nofile"]["soft"].as_u64().expect("ulimits.nofile.soft");
    assert!(nofile >= MIN_NOFILE, "ulimits.nofile.soft {nofile}");

    // The healthcheck is the image's.
    let test = strings(&hub["healthcheck"]["test"]);
    assert_eq!(test.first().map(String::as_str), Some("CMD"));
    assert_eq!(test[1..], image_check[..], "compose's healthcheck is not the image's");

    // It starts a hub the healthcheck sees, ready on its metrics port too.
    let started = launch.start(&flags);
    assert_healthy(started.http);
    if let Some(metrics) = started.metrics {
        let ready = http_get(&format!("127.0.0.1:{metrics}"), "localhost", "/readyz").unwrap();
        assert_eq!(ready.status, 200, "/readyz: {}", String::from_utf8_lossy(&ready.body));
    }
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

    let env: BTreeMap<String, String> = service
        .get("Environment")
        .into_iter()
        .flatten()
        .map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("Environment=KEY=VALUE"))
        .collect();
    let exec: Vec<String> = files::interpolate(one("ExecStart"), &env).split_whitespace().map(str::to_owned).collect();
    assert_eq!(exec.first().map(String::as_str), Some("/usr/local/bin/pconnect-hub"), "ExecStart program");
    let launch = Launch { what: "deploy/pconnect-hub.service", args: exec[1..].to_vec(), env };
    let flags = Flags::read();

    // Its own user (or a dynamic one), its own state directory, which is the hub's data.
    assert!(
        service.get("DynamicUser").is_some_and(|v| v == &["yes"]) || !["", "root", "0"].contains(&one("User")),
        "the hub runs as root"
    );
    let state = format!("/var/lib/{}", one("StateDirectory"));
    assert_eq!(launch.setting(&flags, "--data"), Some(state), "the data directory is not the StateDirectory");

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
    let grace = seconds(&launch.setting(&flags, "--grace").expect("--grace has a default"));
    let stop = seconds(one("TimeoutStopSec"));
    assert!(stop > grace, "TimeoutStopSec={stop}s does not outlast the hub's grace {grace}s");

    let started = launch.start(&flags);
    assert_healthy(started.http);
    drop(started);

    // systemd's own reading: `verify` (ExecStart must exist, so a copy points at the built hub)
    // and `security`, which fails when the hardening gets weaker than it is today.
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

#[test]
fn the_cluster_compose_runs_three_replicas_on_one_store_behind_haproxy() {
    let text = read("deploy/cluster/compose.yml");
    let compose: serde_json::Value = serde_saphyr::from_str(&text).expect("deploy/cluster/compose.yml parses");
    let services = &compose["services"];
    assert!(services["postgres"].is_object() && services["haproxy"].is_object(), "{services}");
    let mut volumes = Vec::new();
    let mut command = Vec::new();
    for name in ["hub1", "hub2", "hub3"] {
        let hub = &services[name];
        command = hub["command"].as_array().unwrap_or_else(|| panic!("{name} has no command")).clone();
        let args: Vec<&str> = command.iter().filter_map(|v| v.as_str()).collect();
        let peer = args.iter().position(|a| *a == "--peer-listen").map(|i| args[i + 1]);
        let peer_port = peer.and_then(|p| p.rsplit(':').next()).unwrap_or_else(|| panic!("{name}: no --peer-listen"));
        let env = &hub["environment"];
        let store = env["PCONNECT_HUB_STORE"].as_str().unwrap_or_else(|| panic!("{name}: no store"));
        let userinfo = store.strip_prefix("postgres://").and_then(|rest| rest.split('@').next()).unwrap_or_default();
        assert!(!userinfo.contains(':'), "{name}: a password in the store URL: {store}");
        assert!(env["PGPASSWORD"].is_string(), "{name}: the store's password is not in PGPASSWORD");
        assert_eq!(env["PCONNECT_HUB_ADVERTISE"].as_str(), Some(format!("{name}:{peer_port}").as_str()), "{name}");
        volumes.push(hub["volumes"][0].as_str().unwrap_or_else(|| panic!("{name}: no data volume")).to_string());
    }
    volumes.dedup();
    assert_eq!(volumes.len(), 3, "replicas share a data dir (their admin sockets would collide): {volumes:?}");

    let cfg = read("deploy/cluster/haproxy.cfg");
    for name in ["hub1", "hub2", "hub3"] {
        for port in [7779, 7780] {
            assert!(cfg.contains(&format!("server {name} {name}:{port}")), "haproxy.cfg misses {name}:{port}");
        }
    }
    match which("haproxy").or_else(|| Some(Path::new("/usr/sbin/haproxy").to_path_buf()).filter(|p| p.exists())) {
        Some(haproxy) => {
            let out =
                run(Command::new(haproxy).arg("-c").arg("-f").arg(workspace_root().join("deploy/cluster/haproxy.cfg")));
            assert!(out.status.success(), "haproxy -c\n{}", describe_output(&out));
        }
        None => skipped("haproxy -c", "HAProxy is not installed"),
    }

    // A replica's command and variables start a real replica (store and addresses swapped).
    let pg = pconnect_e2e::Postgres::start().unwrap();
    pg.create_database("pconnect").unwrap();
    let data = TempDir::new().unwrap();
    let mut cmd = hub_command();
    for arg in command.iter().filter_map(|v| v.as_str()) {
        cmd.arg(if arg.starts_with("0.0.0.0:") { "127.0.0.1:0" } else { arg });
    }
    cmd.args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]).arg("--data").arg(data.path());
    cmd.env("PCONNECT_HUB_STORE", pg.url("pconnect")).env("PCONNECT_HUB_ADVERTISE", "127.0.0.1:7790");
    let mut replica = Proc::spawn(cmd).unwrap();
    replica.wait_for_line("Hub ready", READY).unwrap();
    let banner = replica.output_so_far();
    assert!(banner.contains("Peers:") && banner.contains("PostgreSQL"), "{banner}");
}
