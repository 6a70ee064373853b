//! Routing isolation at the ingress: routed per request, never per connection. On one TLS
//! connection, SNI of one link and Host of another gets 421 (HTTP/1.1 and HTTP/2); two workspaces
//! whose services share a name never reach each other's agent, on plain keep-alive connections either.

use pconnect_e2e::{Agent, HttpClient, HttpServer, Hub};

use super::{attack, https_port, ingress, publish, python_with_h2};

/// A member of `workspace`, logged in with the token in the environment (never in argv).
pub(crate) fn member_of(hub: &Hub, name: &str, workspace: &str) -> (Agent, String) {
    let out = hub.run_admin(["member", "add", name, "--workspace", workspace]);
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    let token =
        String::from_utf8_lossy(&out.stdout).lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap().to_string();
    let agent = Agent::fresh(name).unwrap();
    let mut login = agent.command(["login", "--hub", hub.url(), "--fingerprint", hub.fingerprint()]);
    login.env("PCONNECT_TOKEN", &token);
    let out = pconnect_e2e::output_with_timeout(&mut login, std::time::Duration::from_secs(60)).unwrap();
    assert!(out.status.success(), "{}", pconnect_e2e::describe_output(&out));
    (agent, token)
}

#[test]
fn sni_of_one_link_and_host_of_another_get_421_and_workspaces_never_cross() {
    let shop = HttpServer::start();
    let rival = HttpServer::start();
    let hub = Hub::start_with(&["--https", "127.0.0.1:0"]).unwrap();
    let (alice, _) = member_of(&hub, "alice", "default");
    let (carol, _) = member_of(&hub, "carol", "acme");
    // The same service name in both workspaces: only the workspace tells them apart upstream.
    let ours = publish(&alice, shop.port(), "web", &[]);
    let theirs = publish(&carol, rival.port(), "web", &[]);
    let (shop_port, rival_port) = (shop.port().to_string(), rival.port().to_string());

    // Plain HTTP, one keep-alive connection alternating between the two links.
    let before = (shop.requests(), rival.requests());
    let mut client = HttpClient::connect(&ingress(&hub)).unwrap();
    for round in 0..5 {
        for (link, server) in [(&ours, &shop_port), (&theirs, &rival_port)] {
            let r = client.get(&link.http_host(&hub), &format!("/round/{round}")).unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.header("x-server-port"), Some(server.as_str()), "{} answered by the wrong service", link.name);
        }
    }
    assert_eq!((shop.requests() - before.0, rival.requests() - before.1), (5, 5));

    let Some(python) = python_with_h2("sni_of_one_link_and_host_of_another_get_421 (HTTPS part)") else {
        return;
    };
    let port = https_port(&hub);
    for alpn in ["h2", "http/1.1"] {
        for (sni, own, other, own_server) in
            [(&ours.name, &ours, &theirs, &shop_port), (&theirs.name, &theirs, &ours, &rival_port)]
        {
            let (own_host, other_host) = (format!("{}:{port}", own.name), format!("{}:{port}", other.name));
            let shouting = format!("{}.:{port}", other.name.to_uppercase());
            let before = (shop.requests(), rival.requests());
            let hosts = [&own_host, &other_host, &shouting, &own_host];
            let mut args = vec!["--port".to_string(), port.to_string(), "--sni".into(), sni.clone(), "--alpn".into()];
            args.push(alpn.into());
            for host in hosts {
                args.extend(["--host".to_string(), host.clone()]);
            }
            let result = attack(&python, "tls_requests.py", &args, &[]);
            assert_eq!(result["alpn"], alpn, "{result}");
            let statuses: Vec<u64> =
                result["responses"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect();
            assert_eq!(statuses, [200, 421, 421, 200], "SNI {sni} over {alpn}: {result}");
            for (i, response) in result["responses"].as_array().unwrap().iter().enumerate() {
                let expected = if statuses[i] == 200 { Some(own_server.as_str()) } else { None };
                assert_eq!(response["server"].as_str(), expected, "SNI {sni} over {alpn}, request {i}: {result}");
            }
            let after = (shop.requests(), rival.requests());
            let grown = (after.0 - before.0, after.1 - before.1);
            let expected = if own.name == ours.name { (2, 0) } else { (0, 2) };
            assert_eq!(grown, expected, "SNI {sni} over {alpn}: a misdirected request reached a service");
        }
    }
    // A name that is no link: 404 from the hub, no service contacted.
    let before = (shop.requests(), rival.requests());
    let args: Vec<String> = ["--port", &port.to_string(), "--sni", "nolink0.localhost", "--alpn", "h2", "--host"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("nolink0.localhost:{port}")])
        .collect();
    let result = attack(&python, "tls_requests.py", &args, &[]);
    assert_eq!(result["responses"][0]["status"], 404, "{result}");
    assert_eq!((shop.requests(), rival.requests()), before);
}
