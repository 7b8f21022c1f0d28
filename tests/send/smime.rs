//! S/MIME output checked against the real `openssl` CLI (what APEL SSM runs on
//! the sending side and the APEL receiver on the other), and `ssmsend`'s
//! start-up credential checks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use cloud_accounting::smime::{
    CaDirectory, CertRole, CertificateSettings, Cipher, CredentialError, Credentials, Recipient,
    Signer, ca_certificates_from_dir, ca_store_from_dir, legacy_dn,
};

use crate::support::pki::{self, HOST_DN, Identity, KeyFormat, KeyKind, Pki, SERVER_DN};

// ---------------------------------------------------------------- helpers

/// Runs `openssl args...` with `stdin`; fails the test if the CLI is missing.
fn openssl(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command-line tool must be on PATH (apt-get install openssl)");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// `openssl args...` that must succeed; returns stdout.
fn openssl_ok(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = openssl(args, stdin);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What Python's `universal_newlines=True` makes of the CLI's output.
fn universal(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .into_bytes()
}

/// A cloud message of `n` records as cASO writes it (about 600 bytes each).
fn cloud_message(n: usize) -> Vec<u8> {
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "BenchmarkType: HEPSPEC06\nCloudComputeService: CESNET-MCC\nCloudType: \
                 cloud-accounting/0.1.0 (OpenStack)\nCpuCount: 2\nCpuDuration: 86400\nDisk: 40\n\
                 EndTime: 0\nFQAN: vo.example.org\nGlobalUserName: alice\nImageId: \
                 5c1a2e4e-1c4c-4e0e-9a57-000000000000\nLocalGroupId: \
                 a1b2c3d4e5f60718293a4b5c6d7e8f90\nLocalUserId: \
                 0f9e8d7c6b5a49382716f5e4d3c2b1a0\nMachineName: worker-{i}\nMemory: 4096\n\
                 NetworkType: None\nPublicIPCount: 1\nSiteName: CESNET-MCC\nStartTime: \
                 1717200000\nStatus: started\nSuspendDuration: 0\nVMUUID: \
                 00000000-0000-4000-8000-{i:012}\nWallDuration: 86400\n"
            )
        })
        .collect();
    format!("APEL-cloud-message: v0.4\n{}", records.join("%%\n")).into_bytes()
}

fn settings(pki: &Pki, host: &Identity, server: Option<&Path>) -> CertificateSettings {
    CertificateSettings {
        certificate: host.cert_path.clone(),
        key: host.key_path.clone(),
        capath: pki.capath().to_path_buf(),
        server_cert: server.map(Path::to_path_buf),
        verify_server_cert: true,
    }
}

fn signer(pki: &Pki, host: &Identity) -> Signer {
    Signer::from_settings(&settings(pki, host, None)).unwrap()
}

/// Splits a `multipart/signed` message into (top headers, content part,
/// signature part) and returns the boundary.
fn split_multipart(msg: &str) -> (String, [String; 3]) {
    let start = msg.find("boundary=\"").unwrap() + "boundary=\"".len();
    let boundary = &msg[start..start + msg[start..].find('"').unwrap()];
    let parts: Vec<&str> = msg.split(&format!("--{boundary}")).collect();
    assert_eq!(parts.len(), 4, "preamble, content, signature, epilogue");
    let normalized = |s: &str| s.replace(boundary, "BOUNDARY");
    (
        boundary.to_string(),
        [
            normalized(parts[0]),
            normalized(parts[1]),
            normalized(parts[2]),
        ],
    )
}

/// `openssl asn1parse` of the PKCS#7 in `smime`, with the two values that
/// legitimately differ between two signatures blanked out: the signing time
/// and the RSA signature itself.
fn pkcs7_structure(smime: &[u8]) -> Vec<String> {
    let p7 = openssl_ok(&["smime", "-pk7out"], smime);
    let parsed = openssl_ok(&["asn1parse"], &p7);
    String::from_utf8(parsed)
        .unwrap()
        .lines()
        .map(|l| match l.find("UTCTIME") {
            Some(i) => l[..i].to_string(),
            None if l.contains("l= 256 prim: OCTET STRING") => "<signature>".to_string(),
            None => l.to_string(),
        })
        .collect()
}

fn body_after_headers(smime: &str) -> &str {
    &smime[smime.find("\n\n").unwrap() + 2..]
}

fn headers_of(smime: &str) -> &str {
    &smime[..smime.find("\n\n").unwrap()]
}

// ---------------------------------------------------- signing vs the CLI

#[test]
fn signature_has_the_shape_ssm_sends() {
    let pki = Pki::new();
    let host = pki.host();
    let message = cloud_message(3);
    let ours = String::from_utf8(signer(&pki, &host).sign(&message).unwrap()).unwrap();
    let cli = openssl_ok(
        &[
            "smime",
            "-sign",
            "-inkey",
            path(&host.key_path),
            "-signer",
            path(&host.cert_path),
            "-text",
        ],
        &message,
    );
    let ssm = String::from_utf8(universal(&cli)).unwrap();

    let (our_boundary, our_parts) = split_multipart(&ours);
    let (ssm_boundary, ssm_parts) = split_multipart(&ssm);
    assert_ne!(our_boundary, ssm_boundary, "boundaries are random");
    assert_eq!(our_parts[0], ssm_parts[0], "top-level MIME headers");
    assert_eq!(our_parts[1], ssm_parts[1], "the signed content part");
    assert!(our_parts[1].starts_with("\nContent-Type: text/plain\n\nAPEL-cloud-message: v0.4\n"));
    assert_eq!(
        headers_of(our_parts[2].trim_start()),
        headers_of(ssm_parts[2].trim_start()),
        "signature part headers"
    );
    assert!(ours.starts_with(
        "MIME-Version: 1.0\nContent-Type: multipart/signed; \
         protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----"
    ));
    assert!(
        !ours.contains('\r'),
        "SSM reads the CLI output with universal newlines"
    );
    assert_eq!(
        pkcs7_structure(ours.as_bytes()),
        pkcs7_structure(ssm.as_bytes())
    );
}

#[test]
fn cli_verifies_against_the_test_ca_and_returns_the_message() {
    let pki = Pki::new();
    let host = pki.host();
    let message = cloud_message(100);
    let signed = signer(&pki, &host).sign(&message).unwrap();
    // Host certificates carry no emailProtection usage, hence `-purpose any`
    // (the APEL receiver skips this check with -noverify and runs `openssl
    // verify` on the signer instead, see the next test).
    for trust in [
        ["-CAfile", path(pki.ca_file())],
        ["-CApath", path(pki.capath())],
    ] {
        let mut args = vec!["smime", "-verify", "-purpose", "any", "-text"];
        args.extend(trust);
        let out = openssl_ok(&args, &signed);
        assert_eq!(
            universal(&out),
            message,
            "content after verification ({trust:?})"
        );
    }
}

#[test]
fn apel_receiver_pipeline_accepts_the_host_dn() {
    let pki = Pki::new();
    let host = pki.host();
    let message = cloud_message(2);
    let mut signed = signer(&pki, &host).sign(&message).unwrap();
    signed.extend_from_slice(b"\n\n"); // crypto.verify() appends this

    // get_signer_cert(): smime -pk7out | pkcs7 -print_certs
    let p7 = openssl_ok(&["smime", "-pk7out"], &signed);
    let signer_pem = openssl_ok(&["pkcs7", "-print_certs"], &p7);
    // verify_cert(): openssl verify -CApath, success = "OK" and no "error"
    let verdict = String::from_utf8(openssl_ok(
        &["verify", "-CApath", path(pki.capath())],
        &signer_pem,
    ))
    .unwrap();
    assert!(
        verdict.contains("OK") && !verdict.contains("error"),
        "{verdict}"
    );
    // The signer DN, checked against the allow list.
    let subject = openssl_ok(
        &["x509", "-noout", "-subject", "-nameopt", "compat"],
        &signer_pem,
    );
    assert_eq!(
        String::from_utf8(subject).unwrap().trim(),
        format!("subject={HOST_DN}")
    );
    // smime -verify -noverify; body after the first blank line.
    let out = openssl(
        &[
            "smime",
            "-verify",
            "-CApath",
            path(pki.capath()),
            "-noverify",
        ],
        &signed,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Verification successful"));
    let text = String::from_utf8(universal(&out.stdout)).unwrap();
    assert_eq!(
        body_after_headers(&text),
        String::from_utf8(message).unwrap()
    );
}

#[test]
fn tampered_content_fails_verification() {
    let pki = Pki::new();
    let host = pki.host();
    let signed = signer(&pki, &host).sign(&cloud_message(1)).unwrap();
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("WallDuration: 86400", "WallDuration: 86401");
    let out = openssl(&["smime", "-verify", "-noverify"], tampered.as_bytes());
    assert!(!out.status.success());
}

#[test]
fn ec_host_key_signs_verifiably() {
    let pki = Pki::new();
    let host = pki.ec_host();
    let message = cloud_message(2);
    let signed = signer(&pki, &host).sign(&message).unwrap();
    let args = [
        "smime",
        "-verify",
        "-purpose",
        "any",
        "-CApath",
        path(pki.capath()),
        "-text",
    ];
    assert_eq!(universal(&openssl_ok(&args, &signed)), message);
}

#[test]
fn non_ascii_and_crlf_free_edge_cases_verify() {
    let pki = Pki::new();
    let host = pki.host();
    let signer = signer(&pki, &host);
    let long_line = format!(
        "APEL-cloud-message: v0.4\nMachineName: {}\n",
        "x".repeat(5000)
    );
    for message in [
        &b""[..],
        b"no trailing newline",
        b"\n\n\n",
        long_line.as_bytes(),
    ] {
        let signed = signer.sign(message).unwrap();
        let out = openssl_ok(&["smime", "-verify", "-noverify", "-text"], &signed);
        assert_eq!(
            universal(&out),
            message,
            "{:?}",
            String::from_utf8_lossy(message)
        );
    }
}

// ------------------------------------------------------------ encryption

#[test]
fn encrypted_messages_decrypt_with_the_server_key_for_every_cipher() {
    let pki = Pki::new();
    let host = pki.host();
    let server = pki.server();
    let message = cloud_message(5);
    let creds = || Credentials::load(&host.cert_path, &host.key_path).unwrap();
    let ca = CaDirectory::open(pki.capath()).unwrap();
    for (cipher, oid_name, cli_flag) in [
        (Cipher::Aes128, "aes-128-cbc", "-aes128"),
        (Cipher::Aes192, "aes-192-cbc", "-aes192"),
        (Cipher::Aes256, "aes-256-cbc", "-aes256"),
    ] {
        let creds = creds();
        let recipient = Recipient::load(&server.cert_path, &creds, Some(&ca)).unwrap();
        let signer = Signer::new(creds, Some(recipient), cipher).unwrap();
        let sealed = signer.seal(&message).unwrap();

        // Same envelope headers as SSM's `openssl smime -encrypt -aesNNN`.
        let signed = signer.sign(&message).unwrap();
        let cli = universal(&openssl_ok(
            &["smime", "-encrypt", cli_flag, path(&server.cert_path)],
            &signed,
        ));
        let (ours, theirs) = (
            String::from_utf8(sealed.clone()).unwrap(),
            String::from_utf8(cli).unwrap(),
        );
        assert_eq!(headers_of(&ours), headers_of(&theirs));
        assert!(ours.contains("application/x-pkcs7-mime; smime-type=enveloped-data"));

        let p7 = openssl_ok(&["smime", "-pk7out"], &sealed);
        let parsed = String::from_utf8(openssl_ok(&["asn1parse"], &p7)).unwrap();
        assert!(
            parsed.contains(&format!(":{oid_name}")),
            "{cipher}: {parsed}"
        );

        // The receiver: decrypt with the server key, then verify the signature.
        let decrypted = openssl_ok(
            &[
                "smime",
                "-decrypt",
                "-inkey",
                path(&server.key_path),
                "-recip",
                path(&server.cert_path),
            ],
            &sealed,
        );
        let verified = openssl_ok(
            &[
                "smime",
                "-verify",
                "-purpose",
                "any",
                "-CApath",
                path(pki.capath()),
                "-text",
            ],
            &decrypted,
        );
        assert_eq!(universal(&verified), message, "{cipher}");
    }
}

#[test]
fn from_settings_encrypts_when_server_cert_is_set() {
    let pki = Pki::new();
    let host = pki.host();
    let server = pki.server();
    let signer = Signer::from_settings(&settings(&pki, &host, Some(&server.cert_path))).unwrap();
    assert_eq!(signer.recipient().unwrap().subject_dn(), SERVER_DN);
    let sealed = signer.seal(b"APEL-cloud-message: v0.4\n").unwrap();
    assert!(
        String::from_utf8(sealed)
            .unwrap()
            .contains("smime-type=enveloped-data")
    );
    let plain = signer_for_plain(&pki, &host).seal(b"x\n").unwrap();
    assert!(
        String::from_utf8(plain)
            .unwrap()
            .contains("multipart/signed")
    );
}

fn signer_for_plain(pki: &Pki, host: &Identity) -> Signer {
    signer(pki, host)
}

// ---------------------------------------------------------- start-up checks

fn load_err(cert: &Path, key: &Path) -> CredentialError {
    Credentials::load(cert, key).unwrap_err()
}

#[test]
fn accepts_rsa_and_ec_keys_in_every_pem_flavour() {
    let pki = Pki::new();
    for (kind, format) in [
        (KeyKind::Rsa, KeyFormat::Traditional),
        (KeyKind::Rsa, KeyFormat::Pkcs8),
        (KeyKind::Ec, KeyFormat::Traditional),
        (KeyKind::Ec, KeyFormat::Pkcs8),
    ] {
        let spec = pki::CertSpec::new(pki::HOST_SUBJECT).key(kind, format);
        let id = pki.issue(&format!("{kind:?}-{format:?}"), &spec);
        let creds = Credentials::load(&id.cert_path, &id.key_path)
            .unwrap_or_else(|e| panic!("{kind:?} {format:?}: {e}"));
        assert_eq!(creds.subject_dn(), HOST_DN);
        assert!(
            creds
                .certificate()
                .public_key()
                .unwrap()
                .public_eq(creds.private_key())
        );
        let pem = creds.private_key_pkcs8_pem().unwrap();
        assert!(
            String::from_utf8(pem)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }
}

#[test]
fn refuses_an_expired_certificate() {
    let pki = Pki::new();
    let id = pki.expired();
    let err = load_err(&id.cert_path, &id.key_path);
    assert!(
        matches!(
            err,
            CredentialError::Expired {
                role: CertRole::Host,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(path(&id.cert_path)) && msg.contains("expired on") && msg.contains("GMT"),
        "{msg}"
    );
}

#[test]
fn refuses_a_certificate_expiring_within_a_day() {
    let pki = Pki::new();
    let id = pki.expiring_in_one_hour();
    let err = load_err(&id.cert_path, &id.key_path);
    assert!(
        matches!(err, CredentialError::ExpiresSoon { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("expires within 24 hours (notAfter "),
        "{err}"
    );
    // The CLI check SSM runs agrees.
    let out = openssl(
        &[
            "x509",
            "-checkend",
            "86400",
            "-noout",
            "-in",
            path(&id.cert_path),
        ],
        b"",
    );
    assert!(!out.status.success());
}

#[test]
fn refuses_a_key_that_does_not_match() {
    let pki = Pki::new();
    let id = pki.mismatched_key();
    let err = load_err(&id.cert_path, &id.key_path);
    assert!(
        matches!(err, CredentialError::KeyMismatch { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(path(&id.cert_path)) && msg.contains(path(&id.key_path)),
        "{msg}"
    );
    // An EC key against an RSA certificate, too.
    let ec = pki.ec_host();
    let host = pki.host();
    assert!(matches!(
        load_err(&host.cert_path, &ec.key_path),
        CredentialError::KeyMismatch { .. }
    ));
}

#[test]
fn refuses_an_encrypted_key_without_prompting() {
    let pki = Pki::new();
    let host = pki.host();
    pki::write_encrypted_key(&host.key_path, &host.key, "secret");
    let err = load_err(&host.cert_path, &host.key_path);
    assert!(
        matches!(err, CredentialError::EncryptedKey { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("encrypted with a passphrase"));
}

#[test]
fn unreadable_or_garbage_files_are_named() {
    let pki = Pki::new();
    let host = pki.host();
    let missing = pki.dir().join("nope.pem");
    let err = load_err(&missing, &host.key_path);
    assert!(matches!(err, CredentialError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read certificate {}", missing.display()))
    );
    let err = load_err(&host.key_path, &host.key_path);
    assert!(
        matches!(err, CredentialError::BadCertificate { .. }),
        "{err:?}"
    );
    let err = load_err(&host.cert_path, &host.cert_path);
    assert!(matches!(err, CredentialError::BadKey { .. }), "{err:?}");
    assert!(err.to_string().contains(path(&host.cert_path)));
}

#[test]
fn warns_when_the_key_is_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let host = pki.host();
    let logs = capture_logs(|| Credentials::load(&host.cert_path, &host.key_path).unwrap());
    assert!(!logs.contains("WARN"), "{logs}");
    std::fs::set_permissions(&host.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let logs = capture_logs(|| Credentials::load(&host.cert_path, &host.key_path).unwrap());
    assert!(logs.contains("WARN") && logs.contains("mode 644"), "{logs}");
    assert!(logs.contains("open to other users"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"));
    // Group access is a warning unless root owns the key (a Kubernetes
    // secret mounted with fsGroup and mode 0440).
    std::fs::set_permissions(&host.key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let root_owned = std::os::unix::fs::MetadataExt::uid(&host.key_path.metadata().unwrap()) == 0;
    let logs = capture_logs(|| Credentials::load(&host.cert_path, &host.key_path).unwrap());
    assert_eq!(logs.contains("open to its group"), !root_owned, "{logs}");
    assert_eq!(logs.contains("WARN"), !root_owned, "{logs}");
}

#[test]
fn logs_the_signer_dn_in_legacy_form() {
    let pki = Pki::new();
    let host = pki.host();
    let logs = capture_logs(|| signer(&pki, &host));
    assert!(
        logs.contains(&format!("Messages will be signed using {HOST_DN}")),
        "{logs}"
    );
}

#[test]
fn refuses_the_host_certificate_as_server_cert() {
    let pki = Pki::new();
    let host = pki.host();
    let err = Signer::from_settings(&settings(&pki, &host, Some(&host.cert_path))).unwrap_err();
    assert!(
        matches!(err, CredentialError::ServerCertIsHostCert { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not your own"));
    // A copy of the same certificate under another name is still the host's.
    let copy = pki.dir().join("copy.pem");
    std::fs::copy(&host.cert_path, &copy).unwrap();
    let err = Signer::from_settings(&settings(&pki, &host, Some(&copy))).unwrap_err();
    assert!(
        matches!(err, CredentialError::ServerCertIsHostCert { .. }),
        "{err:?}"
    );
}

#[test]
fn server_cert_must_verify_against_capath_unless_told_not_to() {
    let pki = Pki::new();
    let rogue = Pki::with_ca("Rogue CA");
    let host = pki.host();
    let server = rogue.server();
    let mut s = settings(&pki, &host, Some(&server.cert_path));
    let err = Signer::from_settings(&s).unwrap_err();
    assert!(
        matches!(err, CredentialError::ServerCertUnverified { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(path(&server.cert_path))
            && msg.contains(path(pki.capath()))
            && msg.contains("issuer"),
        "{msg}"
    );
    s.verify_server_cert = false;
    let signer = Signer::from_settings(&s).unwrap();
    assert!(signer.seal(b"x\n").is_ok());
}

#[test]
fn refuses_an_expired_server_cert_and_a_bad_capath() {
    let pki = Pki::new();
    let host = pki.host();
    let expired = pki.expired(); // valid chain, wrong dates
    let err = Signer::from_settings(&settings(&pki, &host, Some(&expired.cert_path))).unwrap_err();
    assert!(
        matches!(
            err,
            CredentialError::Expired {
                role: CertRole::Server,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("server_cert "));

    let server = pki.server();
    let mut s = settings(&pki, &host, Some(&server.cert_path));
    s.capath = pki.dir().join("no-such-dir");
    let err = Signer::from_settings(&s).unwrap_err();
    assert!(matches!(err, CredentialError::BadCaPath { .. }), "{err:?}");
    assert!(matches!(
        ca_store_from_dir(pki.ca_file()),
        Err(CredentialError::BadCaPath { .. })
    ));
}

// ------------------------------------------------------------ DNs and CAs

#[test]
fn legacy_dn_matches_openssl_nameopt_compat() {
    let pki = Pki::new();
    let dir = pki.dir();
    let key = dir.join("k.pem");
    pki::write_key(&key, &pki::generate_key(KeyKind::Ec), KeyFormat::Pkcs8);
    let subjects = [
        "/C=IT/O=INFN/OU=Host/L=CNAF/CN=host.example.org",
        "/DC=org/DC=terena/DC=tcs/C=CZ/O=CESNET/CN=cloud.example.cz/emailAddress=a@b.cz",
        "/C=IT/O=A\\+B\\/C/CN=x",
        "/C=IT/O=INFN+OU=Cloud/CN=h\u{e9}llo w\u{f6}rld",
    ];
    for (i, subject) in subjects.iter().enumerate() {
        let cert = dir.join(format!("dn{i}.pem"));
        openssl_ok(
            &[
                "req",
                "-x509",
                "-key",
                path(&key),
                "-out",
                path(&cert),
                "-days",
                "1",
                "-utf8",
                "-multivalue-rdn",
                "-subj",
                subject,
            ],
            b"",
        );
        let cli = openssl_ok(
            &[
                "x509",
                "-noout",
                "-subject",
                "-nameopt",
                "compat",
                "-in",
                path(&cert),
            ],
            b"",
        );
        let cli = String::from_utf8(cli).unwrap();
        let x509 = openssl::x509::X509::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
        assert_eq!(
            format!("subject={}", legacy_dn(x509.subject_name())),
            cli.trim()
        );
    }
    let host = pki.host();
    assert_eq!(legacy_dn(host.cert.subject_name()), HOST_DN);
}

#[test]
fn test_pki_is_a_valid_grid_layout() {
    let pki = Pki::new();
    let host = pki.host();
    let server = pki.server();
    for id in [&host, &server] {
        let out = openssl_ok(
            &["verify", "-CApath", path(pki.capath()), path(&id.cert_path)],
            b"",
        );
        assert!(String::from_utf8(out).unwrap().trim().ends_with(": OK"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&id.key_path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = String::from_utf8(openssl_ok(
        &["x509", "-noout", "-text", "-in", path(&server.cert_path)],
        b"",
    ))
    .unwrap();
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    let p12 = pki.pkcs12(&server, "changeit");
    let out = openssl_ok(
        &[
            "pkcs12",
            "-in",
            path(&p12),
            "-passin",
            "pass:changeit",
            "-nokeys",
        ],
        b"",
    );
    assert_eq!(
        String::from_utf8(out)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    let cas = ca_certificates_from_dir(pki.capath()).unwrap();
    assert_eq!(cas.len(), 1, "only <hash>.0 files count");
    assert_eq!(cas[0].to_der().unwrap(), pki.ca().cert.to_der().unwrap());
}

// -------------------------------------------------------------- figures

/// Prints seals per second for a 100-record message (no assertion on time):
/// `cargo test --release --test main -- --ignored --nocapture send::smime::bench`.
#[test]
#[ignore = "benchmark: prints figures"]
fn bench_seal_throughput() {
    let pki = Pki::new();
    let host = pki.host();
    let server = pki.server();
    let message = cloud_message(100);
    let plain = signer(&pki, &host);
    let encrypting =
        Signer::from_settings(&settings(&pki, &host, Some(&server.cert_path))).unwrap();
    for (label, signer) in [("sign", &plain), ("sign+encrypt aes128", &encrypting)] {
        let n = 500;
        let start = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += signer.seal(&message).unwrap().len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {} byte message -> {} bytes, {:.0} messages/s ({:.2} ms each)",
            message.len(),
            bytes / n,
            n as f64 / secs,
            secs * 1000.0 / n as f64
        );
    }
    let start = std::time::Instant::now();
    let n = 20;
    for _ in 0..n {
        openssl_ok(
            &[
                "smime",
                "-sign",
                "-inkey",
                path(&host.key_path),
                "-signer",
                path(&host.cert_path),
                "-text",
            ],
            &message,
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "openssl smime -sign CLI (SSM's way): {:.0} messages/s",
        n as f64 / secs
    );
}

// ---------------------------------------------------------- log capture

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a subscriber that records every event; returns the text.
fn capture_logs<T>(f: impl FnOnce() -> T) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
