//! Certificate verifiers that accept exactly one certificate, named by its
//! fingerprint. This is the whole of peer authentication: the daemon pins
//! the engine's certificate from the handshake line, the engine pins the
//! daemon's from what it read on stdin. An engine host also admits the
//! peers the daemon names to it for a relayed push, while that lasts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::fingerprint;

/// The certificates an engine host serves: the daemon's, and for as long
/// as a relayed push needs them, the peers the daemon named to it.
#[derive(Debug)]
pub struct PeerPins {
    daemon: String,
    /// Fingerprint -> how many pushes under way admit it.
    relays: Mutex<HashMap<String, usize>>,
}

impl PeerPins {
    pub fn new(daemon_fingerprint: &str) -> Arc<PeerPins> {
        Arc::new(PeerPins {
            daemon: daemon_fingerprint.to_ascii_lowercase(),
            relays: Mutex::new(HashMap::new()),
        })
    }

    /// Admit `fingerprint` until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, fingerprint: &str) -> PeerPin {
        let fingerprint = fingerprint.to_ascii_lowercase();
        *self
            .relays
            .lock()
            .expect("pins lock")
            .entry(fingerprint.clone())
            .or_default() += 1;
        PeerPin {
            pins: self.clone(),
            fingerprint,
        }
    }

    /// Whether `fingerprint` is the daemon's.
    pub fn is_daemon(&self, fingerprint: &str) -> bool {
        self.daemon == fingerprint
    }

    fn admits(&self, fingerprint: &str) -> bool {
        self.is_daemon(fingerprint)
            || self
                .relays
                .lock()
                .expect("pins lock")
                .contains_key(fingerprint)
    }
}

/// A peer admitted by [`PeerPins::admit`], for as long as this lives.
#[derive(Debug)]
pub struct PeerPin {
    pins: Arc<PeerPins>,
    fingerprint: String,
}

impl Drop for PeerPin {
    fn drop(&mut self) {
        let mut relays = self.pins.relays.lock().expect("pins lock");
        if let Some(count) = relays.get_mut(&self.fingerprint) {
            *count -= 1;
            if *count == 0 {
                relays.remove(&self.fingerprint);
            }
        }
    }
}

/// The fingerprint of the certificate the peer of `conn` presented.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(fingerprint)
}

#[derive(Debug)]
enum Pin {
    One(String),
    Peers(Arc<PeerPins>),
}

#[derive(Debug)]
pub(super) struct PinnedCert {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    pub(super) fn new(fingerprint: &str, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Self {
            pin: Pin::One(fingerprint.to_ascii_lowercase()),
            provider,
        })
    }

    pub(super) fn peers(pins: Arc<PeerPins>, provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Self {
            pin: Pin::Peers(pins),
            provider,
        })
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        // The fingerprint is public, so a plain comparison leaks nothing.
        let presented = fingerprint(cert);
        let admitted = match &self.pin {
            Pin::One(pinned) => presented == *pinned,
            Pin::Peers(pins) => pins.admits(&presented),
        };
        if admitted {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PinnedCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::PeerPins;

    #[test]
    fn a_peer_is_admitted_while_a_push_names_it() {
        let pins = PeerPins::new("AA");
        assert!(pins.admits("aa"), "the daemon, whatever the case");
        assert!(!pins.admits("bb"));
        let first = pins.admit("bb");
        let second = pins.admit("bb");
        assert!(pins.admits("bb"));
        drop(first);
        assert!(pins.admits("bb"), "another push still names it");
        drop(second);
        assert!(!pins.admits("bb"));
        assert!(!pins.is_daemon("bb"));
    }
}
