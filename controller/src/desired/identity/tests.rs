//! The `ldap` and `kerberos` blocks against what the Go operator renders for the same spec (its
//! `config.buildLDAPConfig` / `buildKerberosConfig`, read key by key), and the pod's mounts and env.

use serde_json::json;

use super::*;
use crate::desired::test_support::server;

fn spec(identity: serde_json::Value) -> DittoServerSpec {
    server(json!({"storage": {"metadataSize": "1Gi"}, "identity": identity})).spec
}

fn yaml<T: Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).unwrap()
}

fn r(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef { name: name.into(), key: key.into(), optional: None }
}

#[test]
fn ldap_renders_the_go_operators_keys_in_its_order() {
    let s = spec(json!({"ldap": {"enabled": true, "url": "ldaps://dc.example.com:636", "baseDN": "DC=example,DC=com",
        "bindDN": "CN=svc,DC=example,DC=com", "bindPasswordSecretRef": {"name": "ldap-bind", "key": "password"},
        "userAttr": "sAMAccountName", "realm": "EXAMPLE.COM", "idmap": "rid", "nestedGroups": true,
        "caCertFile": "/etc/ldap/ca.crt"}}));
    assert_eq!(
        yaml(&ldap(&s).unwrap()),
        "enabled: true\nurl: ldaps://dc.example.com:636\nbase_dn: DC=example,DC=com\nbind_dn: CN=svc,DC=example,DC=com\n\
         user_attr: sAMAccountName\nrealm: EXAMPLE.COM\nidmap: rid\nnested_groups: true\ntls:\n  ca_cert_file: /etc/ldap/ca.crt\n"
    );
    assert_eq!(
        env(&s, |n, r| EnvVar { name: format!("{n}={}/{}", r.name, r.key), ..Default::default() })[0].name,
        "DITTOFS_LDAP_BIND_PASSWORD=ldap-bind/password"
    );
    assert_eq!(referenced(&s), vec![&r("ldap-bind", "password")], "the bind password rolls the pod (Go forgot it)");
    assert!(volumes(&s).is_empty(), "LDAP mounts nothing");
    // A disabled section still renders (DittoFS ignores it), with plaintext flags only when set.
    let off = spec(json!({"ldap": {"url": "ldap://dc:389", "baseDN": "b", "bindDN": "d", "startTLS": true}}));
    assert_eq!(
        yaml(&ldap(&off).unwrap()),
        "enabled: false\nurl: ldap://dc:389\nstart_tls: true\nbase_dn: b\nbind_dn: d\n"
    );
}

#[test]
fn kerberos_mounts_its_secrets_where_the_go_operator_does() {
    let s = spec(json!({"kerberos": {"enabled": true, "servicePrincipal": "nfs/files.example.com@EXAMPLE.COM",
        "netbiosDomain": "EXAMPLE", "keytabSecretRef": {"name": "kt", "key": "keytab"},
        "krb5ConfSecretRef": {"name": "krb", "key": "krb5.conf"}, "krb5Conf": "/ignored",
        "machineAccount": {"enabled": true, "accountName": "DITTOFS$", "secretRef": {"name": "ma", "key": "password"},
            "keytabSecretRef": {"name": "ma", "key": "keytab"}, "dcAddress": ["dc1.example.com"]}}}));
    assert_eq!(
        yaml(&kerberos(&s).unwrap()),
        "enabled: true\nkeytab_path: /kerberos/dittofs.keytab\nservice_principal: nfs/files.example.com@EXAMPLE.COM\n\
         netbios_domain: EXAMPLE\nkrb5_conf: /kerberos-krb5/krb5.conf\nmachine_account:\n  enabled: true\n  \
         account_name: DITTOFS$\n  keytab_path: /kerberos-machine/machine.keytab\n  dc_address:\n  - dc1.example.com\n"
    );
    let mounted: Vec<(String, String, Option<i32>, String)> = volumes(&s)
        .into_iter()
        .map(|(v, m)| {
            let secret = v.secret.unwrap();
            let item = secret.items.unwrap().remove(0);
            (m.mount_path, format!("{}/{}", secret.secret_name.unwrap(), item.key), secret.default_mode, item.path)
        })
        .collect();
    assert_eq!(
        mounted,
        [
            ("/kerberos".into(), "kt/keytab".into(), Some(0o440), "dittofs.keytab".into()),
            ("/kerberos-krb5".into(), "krb/krb5.conf".into(), None, "krb5.conf".into()),
            ("/kerberos-machine".into(), "ma/keytab".into(), Some(0o440), "machine.keytab".into()),
        ]
    );
    assert_eq!(referenced(&s).len(), 4);
    let names: Vec<String> =
        env(&s, |n, _| EnvVar { name: n.into(), ..Default::default() }).into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["DITTOFS_KERBEROS_MACHINE_ACCOUNT_SECRET"]);
    // Without a krb5.conf Secret the explicit path is used; disabled, nothing at all.
    let path = spec(
        json!({"kerberos": {"enabled": true, "servicePrincipal": "nfs/h@R", "keytabSecretRef": {"name": "kt", "key": "k"},
        "krb5Conf": "/etc/custom-krb5.conf"}}),
    );
    assert!(yaml(&kerberos(&path).unwrap()).contains("krb5_conf: /etc/custom-krb5.conf\n"));
    let off = spec(json!({"kerberos": {"enabled": false, "keytabSecretRef": {"name": "kt", "key": "k"}}}));
    assert!(kerberos(&off).is_none() && volumes(&off).is_empty() && referenced(&off).is_empty());
}
