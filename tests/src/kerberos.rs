//! Kerberos material for the tests, made by hand: a keytab in MIT's file format (version 0x502, what
//! `ktutil` writes and DittoFS's keytab loader reads) holding one service key, and a minimal krb5.conf.

/// The test realm.
pub const REALM: &str = "DITTOFS.TEST";
/// The test service principal.
pub const SERVICE_PRINCIPAL: &str = "nfs/files.dittofs.test@DITTOFS.TEST";

/// aes256-cts-hmac-sha1-96.
const AES256_CTS_HMAC_SHA1_96: u16 = 18;
/// KRB5_NT_SRV_HST: a service on a host.
const NT_SRV_HST: u32 = 3;

fn counted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u16).to_be_bytes());
    out.extend(bytes);
}

/// A keytab with one entry for `principal` (`service/host@REALM`), key version `kvno`, a fixed 32-byte key.
pub fn keytab(principal: &str, kvno: u8) -> Vec<u8> {
    let (name, realm) = principal.split_once('@').expect("principal has a realm");
    let components: Vec<&str> = name.split('/').collect();
    let mut entry = Vec::new();
    entry.extend((components.len() as u16).to_be_bytes());
    counted(&mut entry, realm.as_bytes());
    for c in &components {
        counted(&mut entry, c.as_bytes());
    }
    entry.extend(NT_SRV_HST.to_be_bytes());
    entry.extend(1_765_000_000u32.to_be_bytes());
    entry.push(kvno);
    entry.extend(AES256_CTS_HMAC_SHA1_96.to_be_bytes());
    counted(&mut entry, &[0x5a; 32]);
    entry.extend(u32::from(kvno).to_be_bytes());
    let mut out = vec![0x05, 0x02];
    out.extend((entry.len() as i32).to_be_bytes());
    out.extend(entry);
    out
}

/// A krb5.conf naming the test realm's KDC (nothing needs to answer there for a keytab to load).
pub fn krb5_conf() -> String {
    format!("[libdefaults]\n  default_realm = {REALM}\n\n[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:88\n  }}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keytab_has_the_mit_layout() {
        let kt = keytab(SERVICE_PRINCIPAL, 2);
        assert_eq!(&kt[..2], &[0x05, 0x02]);
        let size = i32::from_be_bytes(kt[2..6].try_into().unwrap()) as usize;
        assert_eq!(kt.len(), 6 + size);
        // Two components (nfs, the host), then the realm.
        assert_eq!(&kt[6..8], &[0, 2]);
        assert_eq!(&kt[10..22], REALM.as_bytes());
    }
}
