//! Bad TLS input stops `serve-http` and `serve-grpc` before they serve: the
//! process exits non-zero and its stderr names the `api_server.ssl.*` key
//! and, for a file, the file (/work/tls-spec.md, "Start-up errors"); a web
//! configuration file with a key the exporter-toolkit does not have is
//! refused naming the key.

use crate::common::free_port;

use super::door::run_to_exit;
use super::pki::{KEY_PASSWORD, Pki};

/// One bad start: the flags, and what stderr must name.
struct Case {
    what: &'static str,
    subcommand: &'static str,
    args: Vec<String>,
    /// Each inner list is satisfied by any one of its strings.
    names: Vec<Vec<String>>,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn bad_tls_input_exits_non_zero_naming_the_key_and_the_file() {
    let pki = Pki::new();
    let f = |name: &str| pki.file(name);
    let missing = pki.dir().join("no-such-cert.pem").display().to_string();
    let missing_key = pki.dir().join("no-such-key.pem").display().to_string();
    let certfile = "api_server.ssl.certfile".to_string();
    let keyfile = "api_server.ssl.keyfile".to_string();
    let web_config = pki.dir().join("web-unknown-key.yml").display().to_string();
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  no_such_setting: 1\n",
            f("server.pem"),
            f("server.key")
        ),
    )
    .expect("write the web configuration file");
    let cases = vec![
        Case {
            what: "a missing certfile",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &missing,
                "--ssl-keyfile",
                &f("server.key"),
            ]),
            names: vec![vec![certfile.clone()], vec![missing.clone()]],
        },
        Case {
            what: "a missing certfile (gRPC)",
            subcommand: "serve-grpc",
            args: s(&[
                "--ssl-certfile",
                &missing,
                "--ssl-keyfile",
                &f("server.key"),
                "--metrics-port",
                &free_port().to_string(),
            ]),
            names: vec![vec![certfile.clone()], vec![missing.clone()]],
        },
        Case {
            what: "a missing keyfile",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("server.pem"),
                "--ssl-keyfile",
                &missing_key,
            ]),
            names: vec![vec![keyfile.clone()], vec![missing_key.clone()]],
        },
        Case {
            what: "a certfile with no certificate",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("garbage.pem"),
                "--ssl-keyfile",
                &f("server.key"),
            ]),
            names: vec![vec![certfile.clone()], vec![f("garbage.pem")]],
        },
        Case {
            what: "a keyfile with no key",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("server.pem"),
                "--ssl-keyfile",
                &f("server.pem"),
            ]),
            names: vec![vec![keyfile.clone()], vec![f("server.pem")]],
        },
        Case {
            what: "a key that does not match the certificate",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("server.pem"),
                "--ssl-keyfile",
                &f("server2.key"),
            ]),
            names: vec![
                vec![keyfile.clone(), certfile.clone()],
                vec![f("server2.key"), f("server.pem")],
            ],
        },
        Case {
            what: "a wrong keyfile password",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("server.pem"),
                "--ssl-keyfile",
                &f("server-enc.key"),
                "--ssl-keyfile-password",
                "not the password",
            ]),
            // api_server.ssl.keyfile or api_server.ssl.keyfile_password.
            names: vec![vec![keyfile.clone()], vec![f("server-enc.key")]],
        },
        Case {
            what: "an encrypted key without a password",
            subcommand: "serve-http",
            args: s(&[
                "--ssl-certfile",
                &f("server.pem"),
                "--ssl-keyfile",
                &f("server-enc.key"),
            ]),
            names: vec![vec![keyfile.clone()], vec![f("server-enc.key")]],
        },
        Case {
            what: "a certfile without a keyfile",
            subcommand: "serve-http",
            args: s(&["--ssl-certfile", &f("server.pem")]),
            names: vec![vec![keyfile.clone()]],
        },
        Case {
            what: "a protocol version other than 2 or 17",
            subcommand: "serve-http",
            args: [
                pki.ssl_flags("server.pem", "server.key"),
                s(&["--ssl-version", "5"]),
            ]
            .concat(),
            names: vec![vec!["api_server.ssl.version".into()]],
        },
        Case {
            what: "ciphers other than BentoML's default",
            subcommand: "serve-http",
            args: [
                pki.ssl_flags("server.pem", "server.key"),
                s(&["--ssl-ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]),
            ]
            .concat(),
            names: vec![vec!["api_server.ssl.ciphers".into()]],
        },
        Case {
            what: "client certificates required without ca_certs",
            subcommand: "serve-http",
            args: [
                pki.ssl_flags("server.pem", "server.key"),
                s(&["--ssl-cert-reqs", "2"]),
            ]
            .concat(),
            names: vec![vec![
                "api_server.ssl.ca_certs".into(),
                "api_server.ssl.cert_reqs".into(),
            ]],
        },
        Case {
            what: "a web configuration file with an unknown key",
            subcommand: "serve-http",
            args: s(&[
                "--metrics-port",
                &free_port().to_string(),
                "--web.config.file",
                &web_config,
            ]),
            names: vec![vec!["no_such_setting".into()], vec![web_config.clone()]],
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let out = run_to_exit(case.subcommand, &case.args);
        let exited_non_zero = out.status.is_some_and(|st| !st.success());
        let missing: Vec<&Vec<String>> = case
            .names
            .iter()
            .filter(|any| !any.iter().any(|n| out.stderr.contains(n.as_str())))
            .collect();
        if !exited_non_zero || !missing.is_empty() {
            failures.push(format!(
                "{} ({} {}): status {:?} (want a non-zero exit), stderr lacks {missing:?}:\n{}",
                case.what,
                case.subcommand,
                case.args.join(" "),
                out.status,
                out.stderr
            ));
        }
        // The password given on the command line is not echoed back.
        assert!(
            !out.stderr.contains(KEY_PASSWORD),
            "{}: stderr prints the key's password:\n{}",
            case.what,
            out.stderr
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
