//! Twilio: `X-Twilio-Signature` is the base64 HMAC-SHA1 of the public URL Twilio
//! called, followed by every form parameter's name and value, sorted by name.
//! For non-form bodies Twilio adds `bodySHA256=<hex>` to the URL and signs the URL
//! alone. Behind a proxy the URL is rebuilt from the configured `public_url`.

use ::hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Failure, Request, Secret, decode_base64, one_header};

/// The string Twilio signs for a request to `url` with this body.
pub fn signed_data(url: &str, content_type: Option<&str>, body: &[u8]) -> String {
    let mut data = url.to_owned();
    let is_form = content_type.is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    if is_form {
        let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in params {
            data.push_str(&k);
            data.push_str(&v);
        }
    }
    data
}

pub(super) fn verify(keys: &[Secret], req: &Request<'_>, public_url: &str) -> Result<(), Failure> {
    let sig =
        decode_base64(one_header(req.headers, "X-Twilio-Signature")?).ok_or(Failure::Invalid)?;
    let url = format!("{}{}", public_url.trim_end_matches('/'), req.path_and_query);
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Some(declared) = body_sha256_param(req.path_and_query) {
        let actual = hex::encode(Sha256::digest(req.body));
        if !bool::from(
            actual
                .as_bytes()
                .ct_eq(declared.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(Failure::Invalid);
        }
    }
    let data = signed_data(&url, content_type, req.body);
    let ok = keys.iter().fold(false, |ok, k| {
        let mut mac =
            Hmac::<Sha1>::new_from_slice(k.expose()).expect("HMAC takes keys of any length");
        mac.update(data.as_bytes());
        mac.verify_slice(&sig).is_ok() | ok
    });
    if ok { Ok(()) } else { Err(Failure::Invalid) }
}

fn body_sha256_param(path_and_query: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::super::{DEFAULT_TOLERANCE, Scheme, Verifier};
    use super::*;

    fn check(public_url: &str, path: &str, sig: &str, ct: &str, body: &str) -> Result<(), Failure> {
        let v = Verifier::new(
            Scheme::Twilio {
                public_url: public_url.into(),
            },
            vec![Secret::new("12345")],
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-twilio-signature", sig.parse().unwrap());
        h.insert("content-type", ct.parse().unwrap());
        v.verify(&Request {
            headers: &h,
            path_and_query: path,
            body: body.as_bytes(),
            now: 0,
        })
    }

    const FORM: &str = "application/x-www-form-urlencoded";
    const BODY: &str = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";

    #[test]
    fn doc_example_and_the_url_behind_a_proxy() {
        let path = "/myapp.php?foo=1&bar=2";
        let sig = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
        assert_eq!(
            check("https://mycompany.com", path, sig, FORM, BODY),
            Ok(())
        );
        assert_eq!(
            check("https://mycompany.com/", path, sig, FORM, BODY),
            Ok(())
        );
        assert_eq!(
            check("http://mycompany.com", path, sig, FORM, BODY),
            Err(Failure::Invalid)
        );
    }

    #[test]
    fn json_bodies_are_bound_by_body_sha256() {
        let body = "{\"a\":1}";
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        let path = format!("/hook?bodySHA256={digest}");
        let data = format!("https://x.test{path}");
        let mut mac = Hmac::<Sha1>::new_from_slice(b"12345").unwrap();
        mac.update(data.as_bytes());
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            check("https://x.test", &path, &sig, "application/json", body),
            Ok(())
        );
        assert_eq!(
            check(
                "https://x.test",
                &path,
                &sig,
                "application/json",
                "{\"a\":2}"
            ),
            Err(Failure::Invalid)
        );
    }
}
