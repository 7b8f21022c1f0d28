//! Distinguished names in OpenSSL's legacy one-line form, `/C=IT/O=INFN/CN=host`.
//!
//! This is what `openssl x509 -noout -subject -nameopt compat` prints
//! (`X509_NAME_oneline`), the form SSM logs and the APEL receiver's signer
//! allow list uses. Reimplemented here because the `openssl` crate does not
//! expose `X509_NAME_oneline`; the integration tests compare it with the CLI.

use openssl::x509::X509NameRef;

/// `name` as `/C=IT/O=INFN/CN=host.example.org`.
///
/// Like `X509_NAME_oneline`: short attribute names (or the dotted OID when
/// OpenSSL has no name for it), `+` between the members of a multi-valued
/// RDN, `\` before a `/` or `+` in a value, and `\xHH` for every byte outside
/// printable ASCII (so UTF-8 text shows as its bytes).
pub fn legacy_dn(name: &X509NameRef) -> String {
    let starts_rdn = rdn_starts(name);
    let mut out = String::new();
    for (i, entry) in name.entries().enumerate() {
        let joins_previous = starts_rdn.as_ref().is_some_and(|s| !s[i]);
        out.push(if joins_previous { '+' } else { '/' });
        out.push_str(&attribute_name(entry.object()));
        out.push('=');
        push_escaped(&mut out, entry.data().as_slice());
    }
    out
}

fn attribute_name(object: &openssl::asn1::Asn1ObjectRef) -> String {
    let nid = object.nid();
    match nid.short_name() {
        Ok(short) if nid != openssl::nid::Nid::UNDEF => short.to_string(),
        // Asn1Object's Display is OBJ_obj2txt(no_name = 0), what i2t_ASN1_OBJECT gives.
        _ => object.to_string(),
    }
}

fn push_escaped(out: &mut String, value: &[u8]) {
    for &b in value {
        match b {
            b'/' | b'+' => {
                out.push('\\');
                out.push(b as char);
            }
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
}

/// For each entry of `name`, whether it starts a new RDN (a SET in the DER
/// encoding). `None` if the encoding cannot be walked, which only costs the
/// `+` separators of multi-valued RDNs (all entries then start with `/`).
fn rdn_starts(name: &X509NameRef) -> Option<Vec<bool>> {
    let der = name.to_der().ok()?;
    let (tag, body, _) = der_tlv(&der)?;
    if tag != 0x30 {
        return None;
    }
    let mut starts = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, set, after) = der_tlv(rest)?;
        if tag != 0x31 {
            return None;
        }
        let mut members = set;
        let mut first = true;
        while !members.is_empty() {
            let (_, _, after_member) = der_tlv(members)?;
            starts.push(first);
            first = false;
            members = after_member;
        }
        rest = after;
    }
    (starts.len() == name.entries().count()).then_some(starts)
}

/// Splits one DER TLV off `input`: (tag, contents, remainder).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509NameBuilder;

    fn name(entries: &[(&str, &str)]) -> openssl::x509::X509Name {
        let mut b = X509NameBuilder::new().unwrap();
        for (k, v) in entries {
            b.append_entry_by_text(k, v).unwrap();
        }
        b.build()
    }

    #[test]
    fn slash_separated_short_names_in_encoding_order() {
        let n = name(&[("C", "IT"), ("O", "INFN"), ("CN", "host.example.org")]);
        assert_eq!(legacy_dn(&n), "/C=IT/O=INFN/CN=host.example.org");
    }

    #[test]
    fn escapes_separators_and_non_ascii() {
        let n = name(&[("O", "A+B/C"), ("CN", "h\u{e9}llo")]);
        assert_eq!(legacy_dn(&n), "/O=A\\+B\\/C/CN=h\\xC3\\xA9llo");
    }

    #[test]
    fn email_and_unknown_oids() {
        let n = name(&[("emailAddress", "a@b.c"), ("1.2.3.4.5", "x")]);
        assert_eq!(legacy_dn(&n), "/emailAddress=a@b.c/1.2.3.4.5=x");
    }

    #[test]
    fn empty_name_is_empty() {
        assert_eq!(legacy_dn(&name(&[])), "");
    }

    #[test]
    fn der_walker_rejects_truncation() {
        assert!(der_tlv(&[0x30, 0x05, 0x01]).is_none());
        assert!(der_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert_eq!(
            der_tlv(&[0x31, 0x01, 0xaa, 0xbb]),
            Some((0x31, &[0xaa][..], &[0xbb][..]))
        );
    }
}
