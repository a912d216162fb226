//! rustls needs one process-wide crypto provider; redis-rs leaves the choice to the application.

/// Installs rustls' `ring` provider unless the application installed one already, so a
/// `rediss://` URL works without the application knowing about rustls at all.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
