//! LDAP and Kerberos in the server pod: the `ldap` and `kerberos` blocks of the DittoFS config (as the Go
//! operator renders them, key for key), the Secrets they need mounted into the DittoFS container only (the
//! agent never sees them) at the Go operator's paths, the two passwords as env vars, and the Secret keys whose
//! data rolls the pod.

use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use serde::Serialize;

use dittofs_api::DittoServerSpec;
use dittofs_api::crd::{Idmap, KerberosSpec, LdapSpec, SecretKeyRef};

/// Mount of the service keytab Secret.
pub const KEYTAB_DIR: &str = "/kerberos";
/// File of the service keytab.
pub const KEYTAB_FILE: &str = "dittofs.keytab";
/// Mount of the krb5.conf Secret.
pub const KRB5_DIR: &str = "/kerberos-krb5";
/// File of krb5.conf.
pub const KRB5_FILE: &str = "krb5.conf";
/// Mount of the machine-account keytab Secret.
pub const MACHINE_KEYTAB_DIR: &str = "/kerberos-machine";
/// File of the machine-account keytab.
pub const MACHINE_KEYTAB_FILE: &str = "machine.keytab";
/// Env var of the LDAP bind password (DittoFS binds it to `ldap.bind_password`).
pub const LDAP_BIND_PASSWORD_ENV: &str = "DITTOFS_LDAP_BIND_PASSWORD";
/// Env var of the machine account's password (`kerberos.machine_account.secret`).
pub const MACHINE_SECRET_ENV: &str = "DITTOFS_KERBEROS_MACHINE_ACCOUNT_SECRET";
/// Keytabs are read by DittoFS only: owner and group read (0440), not the 0644 default.
const KEYTAB_MODE: i32 = 0o440;

const KEYTAB_VOLUME: &str = "kerberos-keytab";
const KRB5_VOLUME: &str = "kerberos-krb5";
const MACHINE_KEYTAB_VOLUME: &str = "kerberos-machine-keytab";

/// The `ldap` block.
#[derive(Serialize, Debug)]
pub struct Ldap<'a> {
    enabled: bool,
    url: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    start_tls: bool,
    #[serde(skip_serializing_if = "is_false")]
    allow_plaintext: bool,
    base_dn: &'a str,
    bind_dn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_attr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idmap: Option<&'static str>,
    #[serde(skip_serializing_if = "is_false")]
    nested_groups: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<LdapTls<'a>>,
}

#[derive(Serialize, Debug)]
struct LdapTls<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_cert_file: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    insecure_skip_verify: bool,
}

/// The `kerberos` block.
#[derive(Serialize, Debug)]
pub struct Kerberos<'a> {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keytab_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netbios_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    krb5_conf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine_account: Option<MachineAccount<'a>>,
}

#[derive(Serialize, Debug)]
struct MachineAccount<'a> {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keytab_path: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    dc_address: &'a [String],
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn ldap_spec(spec: &DittoServerSpec) -> Option<&LdapSpec> {
    spec.identity.as_ref()?.ldap.as_ref()
}

/// Kerberos, when enabled (a disabled section renders and mounts nothing, as in Go).
fn kerberos_spec(spec: &DittoServerSpec) -> Option<&KerberosSpec> {
    spec.identity.as_ref()?.kerberos.as_ref().filter(|k| k.enabled)
}

fn machine_spec(spec: &DittoServerSpec) -> Option<&dittofs_api::crd::MachineAccountSpec> {
    kerberos_spec(spec)?.machine_account.as_ref().filter(|m| m.enabled)
}

/// The `ldap` block whenever the section is present.
pub fn ldap(spec: &DittoServerSpec) -> Option<Ldap<'_>> {
    let l = ldap_spec(spec)?;
    let tls = (nonempty(&l.ca_cert_file).is_some() || l.insecure_skip_verify)
        .then(|| LdapTls { ca_cert_file: nonempty(&l.ca_cert_file), insecure_skip_verify: l.insecure_skip_verify });
    Some(Ldap {
        enabled: l.enabled,
        url: &l.url,
        start_tls: l.start_tls,
        allow_plaintext: l.allow_plaintext,
        base_dn: &l.base_dn,
        bind_dn: &l.bind_dn,
        user_attr: nonempty(&l.user_attr),
        realm: nonempty(&l.realm),
        idmap: l.idmap.map(|i| match i {
            Idmap::Rfc2307 => "rfc2307",
            Idmap::Rid => "rid",
        }),
        nested_groups: l.nested_groups,
        tls,
    })
}

/// The `kerberos` block when enabled: paths of the mounted Secrets; a krb5.conf Secret wins over the path.
pub fn kerberos(spec: &DittoServerSpec) -> Option<Kerberos<'_>> {
    let k = kerberos_spec(spec)?;
    Some(Kerberos {
        enabled: true,
        keytab_path: k.keytab_secret_ref.as_ref().map(|_| format!("{KEYTAB_DIR}/{KEYTAB_FILE}")),
        service_principal: nonempty(&k.service_principal),
        realm: nonempty(&k.realm),
        netbios_domain: nonempty(&k.netbios_domain),
        dns_domain: nonempty(&k.dns_domain),
        krb5_conf: match (&k.krb5_conf_secret_ref, nonempty(&k.krb5_conf)) {
            (Some(_), _) => Some(format!("{KRB5_DIR}/{KRB5_FILE}")),
            (None, path) => path.map(str::to_owned),
        },
        machine_account: machine_spec(spec).map(|m| MachineAccount {
            enabled: true,
            account_name: nonempty(&m.account_name),
            keytab_path: m.keytab_secret_ref.as_ref().map(|_| format!("{MACHINE_KEYTAB_DIR}/{MACHINE_KEYTAB_FILE}")),
            dc_address: &m.dc_address,
        }),
    })
}

/// The Secret keys DittoFS reads for LDAP and Kerberos: each is hashed into the pod template (a change rolls
/// the pod; the Go operator left the LDAP bind password out, so rotating it changed nothing until a restart).
pub fn referenced(spec: &DittoServerSpec) -> Vec<&SecretKeyRef> {
    let mut refs: Vec<&SecretKeyRef> =
        ldap_spec(spec).and_then(|l| l.bind_password_secret_ref.as_ref()).into_iter().collect();
    if let Some(k) = kerberos_spec(spec) {
        refs.extend(k.keytab_secret_ref.iter().chain(k.krb5_conf_secret_ref.iter()));
    }
    if let Some(m) = machine_spec(spec) {
        refs.extend(m.secret_ref.iter().chain(m.keytab_secret_ref.iter()));
    }
    refs
}

/// The env vars of the DittoFS container: the LDAP bind password and the machine account's password.
pub fn env(spec: &DittoServerSpec, secret_env: impl Fn(&str, &SecretKeyRef) -> EnvVar) -> Vec<EnvVar> {
    let ldap = ldap_spec(spec)
        .and_then(|l| l.bind_password_secret_ref.as_ref())
        .map(|r| secret_env(LDAP_BIND_PASSWORD_ENV, r));
    let machine = machine_spec(spec).and_then(|m| m.secret_ref.as_ref()).map(|r| secret_env(MACHINE_SECRET_ENV, r));
    ldap.into_iter().chain(machine).collect()
}

/// The Secret volumes and their read-only mounts in the DittoFS container.
pub fn volumes(spec: &DittoServerSpec) -> Vec<(Volume, VolumeMount)> {
    let one = |volume: &str, dir: &str, r: &SecretKeyRef, file: &str, mode: Option<i32>| {
        let source = SecretVolumeSource {
            secret_name: Some(r.name.clone()),
            items: Some(vec![KeyToPath { key: r.key.clone(), path: file.into(), mode: None }]),
            default_mode: mode,
            ..Default::default()
        };
        let v = Volume { name: volume.into(), secret: Some(source), ..Default::default() };
        let m =
            VolumeMount { name: volume.into(), mount_path: dir.into(), read_only: Some(true), ..Default::default() };
        (v, m)
    };
    let mut out = Vec::new();
    if let Some(k) = kerberos_spec(spec) {
        if let Some(r) = &k.keytab_secret_ref {
            out.push(one(KEYTAB_VOLUME, KEYTAB_DIR, r, KEYTAB_FILE, Some(KEYTAB_MODE)));
        }
        if let Some(r) = &k.krb5_conf_secret_ref {
            out.push(one(KRB5_VOLUME, KRB5_DIR, r, KRB5_FILE, None));
        }
    }
    if let Some(r) = machine_spec(spec).and_then(|m| m.keytab_secret_ref.as_ref()) {
        out.push(one(MACHINE_KEYTAB_VOLUME, MACHINE_KEYTAB_DIR, r, MACHINE_KEYTAB_FILE, Some(KEYTAB_MODE)));
    }
    out
}

#[cfg(test)]
mod tests;
