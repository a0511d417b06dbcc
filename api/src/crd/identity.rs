//! `spec.identity.ldap` and `spec.identity.kerberos`: the Go operator's fields, typed, with what DittoFS
//! refuses at start-up (its `ldap.Config.Validate`, `KerberosConfig.Validate`) and what the Go webhook
//! checked refused here first, each message naming the field and what to write instead.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::cel::rule;
use super::spec::SecretKeyRef;

/// LDAP: ldap:// needs startTLS or allowPlaintext (DittoFS refuses a plaintext bind otherwise).
pub const LDAP_PLAINTEXT_RULE: &str =
    "!self.enabled || !self.url.lowerAscii().startsWith('ldap://') || self.startTLS || self.allowPlaintext";
const LDAP_PLAINTEXT_MESSAGE: &str = "ldap.url uses plaintext ldap://: set ldap.startTLS: true to upgrade the \
     connection, ldap.allowPlaintext: true to allow an unencrypted bind, or use ldaps://";
/// LDAP: a bind password (an empty one is an anonymous bind, which DittoFS refuses).
pub const LDAP_BIND_PASSWORD_RULE: &str = "!self.enabled || has(self.bindPasswordSecretRef)";
const LDAP_BIND_PASSWORD_MESSAGE: &str = "ldap.enabled needs ldap.bindPasswordSecretRef (the Secret key holding the \
     password of bindDN): DittoFS refuses an empty bind password, which would be an anonymous bind";

/// LDAP / Active Directory identity provider of DittoFS (resolves domain users and groups for NFS and SMB).
/// Rendered as the `ldap` block of the DittoFS config whenever present; the bind password goes to DittoFS
/// as the environment variable DITTOFS_LDAP_BIND_PASSWORD, never into the ConfigMap. DittoFS copies the
/// block into its database at its first start with LDAP on; later edits reach it only through its API
/// (`dfsctl identity-provider`), as with the Go operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rule(LDAP_PLAINTEXT_RULE, LDAP_PLAINTEXT_MESSAGE),
    validation = rule(LDAP_BIND_PASSWORD_RULE, LDAP_BIND_PASSWORD_MESSAGE)
)]
pub struct LdapSpec {
    /// Turns the provider on. Off, the block is still rendered (as the Go operator does) and DittoFS ignores it.
    #[serde(default)]
    pub enabled: bool,
    /// Directory URL, ldaps://host:636 or ldap://host:389 (the latter with startTLS or allowPlaintext).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = rule(
        "self.lowerAscii().startsWith('ldap://') || self.lowerAscii().startsWith('ldaps://')",
        "ldap.url must start with ldap:// or ldaps://"
    ))]
    pub url: String,
    /// Upgrade an ldap:// connection with StartTLS.
    #[serde(default, rename = "startTLS")]
    pub start_tls: bool,
    /// Allow an unencrypted bind over ldap:// (lab use).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Base DN of the searches, e.g. DC=contoso,DC=com.
    #[serde(rename = "baseDN")]
    #[schemars(length(min = 1, max = 2048))]
    pub base_dn: String,
    /// DN of the service account DittoFS binds as.
    #[serde(rename = "bindDN")]
    #[schemars(length(min = 1, max = 2048))]
    pub bind_dn: String,
    /// Secret key holding the service account's password (required when enabled). Mounted into the DittoFS
    /// container only, as DITTOFS_LDAP_BIND_PASSWORD; a change rolls the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password_secret_ref: Option<SecretKeyRef>,
    /// Attribute holding the user name (DittoFS's default: sAMAccountName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = rule(
        "self.matches('^[A-Za-z][A-Za-z0-9-]*$')",
        "ldap.userAttr must be an LDAP attribute name: a letter, then letters, digits and '-'"
    ))]
    pub user_attr: Option<String>,
    /// Realm of the users, e.g. CONTOSO.COM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub realm: Option<String>,
    /// How uids and gids are mapped: rfc2307 (the directory's uidNumber/gidNumber, DittoFS's default) or rid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idmap: Option<Idmap>,
    /// Resolve nested group memberships.
    #[serde(default)]
    pub nested_groups: bool,
    /// Path, inside the DittoFS container, of a CA bundle to verify the directory's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub ca_cert_file: Option<String>,
    /// Do not verify the directory's certificate (lab use only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Uid/gid mapping of LDAP users.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum Idmap {
    /// The directory's uidNumber and gidNumber.
    Rfc2307,
    /// Derived from the account's RID.
    Rid,
}

const NO_SEPARATORS: &str = "!self.contains('@') && !self.contains('/') && !self.contains(' ')";

/// Kerberos / Active Directory authentication of NFS (RPCSEC_GSS) and SMB. Rendered as the `kerberos`
/// block of the DittoFS config when enabled; the keytab, krb5.conf and machine-account Secrets are mounted
/// into the DittoFS container only (at /kerberos, /kerberos-krb5 and /kerberos-machine, as the Go operator
/// does), and a change of any of them rolls the pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rule(
        "!self.enabled || (has(self.servicePrincipal) && size(self.servicePrincipal) > 0)",
        "kerberos.enabled needs kerberos.servicePrincipal, e.g. nfs/server.example.com@EXAMPLE.COM"
    ),
    validation = rule(
        "!self.enabled || has(self.keytabSecretRef)",
        "kerberos.enabled needs kerberos.keytabSecretRef: the Secret key holding the service keytab"
    )
)]
pub struct KerberosSpec {
    /// Turns Kerberos on; off, no kerberos block is rendered and nothing is mounted.
    #[serde(default)]
    pub enabled: bool,
    /// Service principal, service/host@REALM (required when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub service_principal: Option<String>,
    /// Realm, e.g. CONTOSO.COM; unset, DittoFS takes the @REALM of servicePrincipal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = rule(NO_SEPARATORS, "kerberos.realm must not contain '@', '/' or spaces, e.g. CONTOSO.COM"))]
    pub realm: Option<String>,
    /// NetBIOS domain advertised by SMB, e.g. CONTOSO; unset means WORKGROUP.
    #[serde(default, rename = "netbiosDomain", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    #[x_kube(validation = rule(
        "!self.contains('.') && !self.contains('@') && !self.contains('/') && !self.contains(' ')",
        "kerberos.netbiosDomain must be a single NetBIOS label without '.', '@', '/' or spaces, e.g. CONTOSO"
    ))]
    pub netbios_domain: Option<String>,
    /// DNS domain advertised by SMB, e.g. contoso.com; unset, the lower-cased realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = rule(NO_SEPARATORS, "kerberos.dnsDomain must not contain '@', '/' or spaces, e.g. contoso.com"))]
    pub dns_domain: Option<String>,
    /// Secret key holding the service keytab, mounted at /kerberos/dittofs.keytab (mode 0440).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keytab_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding a krb5.conf, mounted at /kerberos-krb5/krb5.conf; it wins over krb5Conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krb5_conf_secret_ref: Option<SecretKeyRef>,
    /// Path of krb5.conf inside the DittoFS container when no Secret is given (DittoFS's default /etc/krb5.conf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub krb5_conf: Option<String>,
    /// An Active Directory machine account for NETLOGON pass-through of domain NTLM logons (SMB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_account: Option<MachineAccountSpec>,
}

/// The machine (computer) account of the SMB server in Active Directory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rule(
        "!self.enabled || (has(self.accountName) && size(self.accountName) > 0)",
        "kerberos.machineAccount.enabled needs kerberos.machineAccount.accountName, e.g. DITTOFS$"
    ),
    validation = rule(
        "!self.enabled || has(self.secretRef) || has(self.keytabSecretRef)",
        "kerberos.machineAccount.enabled needs kerberos.machineAccount.secretRef (its password) or keytabSecretRef"
    )
)]
pub struct MachineAccountSpec {
    /// Turns NETLOGON pass-through on.
    #[serde(default)]
    pub enabled: bool,
    /// The account's sAMAccountName, e.g. DITTOFS$.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub account_name: Option<String>,
    /// Secret key holding the account's password, given to DittoFS as DITTOFS_KERBEROS_MACHINE_ACCOUNT_SECRET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the account's keytab, mounted at /kerberos-machine/machine.keytab (mode 0440).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keytab_secret_ref: Option<SecretKeyRef>,
    /// Domain controllers to reach (host or host:port); unset, DittoFS finds them through DNS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub dc_address: Vec<String>,
}
