//! TLS for QUIC, with the node's Ed25519 key as its only credential.
//!
//! Each node presents a self-signed certificate for its own Ed25519 key; there is no CA.
//! Both sides present one (mutual TLS), and the peer's DID is *derived* from the key in
//! the certificate it proved possession of during the handshake. Whether that DID is the
//! one the caller meant to reach is decided after the handshake, before any ICN frame is
//! exchanged (netd's `connection::establish`).
//!
//! It lives with the identity because it is one: netd serves with it, and the benchmark's
//! raw-QUIC ceiling dials with the very same configuration.

use crate::{Did, NodeIdentity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// ALPN protocol id; a peer that does not speak it fails the handshake.
pub const ALPN: &[u8] = b"icn/1";
/// Server name sent in the handshake. Certificates are not checked against names (the
/// DID is the name), but QUIC requires one.
pub const SERVER_NAME: &str = "icn";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("building the node certificate: {0}")]
    Certificate(String),
    #[error("tls configuration: {0}")]
    Config(String),
}

/// The node's certificate and key, built once at start-up.
pub struct TlsIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TlsIdentity {
    pub fn new(identity: &NodeIdentity) -> Result<Self, TlsError> {
        let pkcs8 = PrivatePkcs8KeyDer::from(identity.signing_key_pkcs8_der());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, identity.did().to_string());
        let cert = params.self_signed(&key_pair).map_err(|e| TlsError::Certificate(e.to_string()))?;
        Ok(Self { cert: cert.der().clone(), key: pkcs8 })
    }

    pub fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier { algorithms: provider.signature_verification_algorithms });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    pub fn client_crypto(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier { algorithms: provider.signature_verification_algorithms });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The DID named by an Ed25519 certificate.
pub fn did_from_certificate(der: &[u8]) -> Result<Did, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparseable certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(format!("certificate key algorithm {} is not ed25519", spki.algorithm.algorithm));
    }
    let key: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| "ed25519 public key is not 32 bytes".to_string())?;
    let key = crate::verifying_key(&key).map_err(|e| e.to_string())?;
    Ok(Did::from_public_key(&key))
}

/// The DID of the peer on an established connection, from what the QUIC library reports
/// as its peer identity (quinn's `Connection::peer_identity`).
pub fn peer_did(identity: Option<Box<dyn std::any::Any>>) -> Result<Did, String> {
    let identity = identity.ok_or("the peer presented no certificate")?;
    let certs =
        identity.downcast::<Vec<CertificateDer<'static>>>().map_err(|_| "unexpected peer identity type".to_string())?;
    let first = certs.first().ok_or("the peer presented an empty certificate chain")?;
    did_from_certificate(first)
}

/// Accepts any certificate that carries an Ed25519 key and whose holder signs the
/// handshake with it. Identity is the key, so there is no chain or name to check.
#[derive(Debug)]
struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        did_from_certificate(end_entity)
            .map(|_| ())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_node_did() {
        let id = NodeIdentity::generate();
        let tls = TlsIdentity::new(&id).unwrap();
        assert_eq!(&did_from_certificate(&tls.cert).unwrap(), id.did());
        assert!(tls.server_crypto().is_ok());
        assert!(tls.client_crypto().is_ok());
    }

    #[test]
    fn a_non_certificate_is_refused() {
        assert!(did_from_certificate(b"garbage").is_err());
    }
}
