//! The shared conformance suite against real memcached servers (`scripts/services.sh` starts
//! them with `-I 2m`: the suite stores a 1 MiB value, over memcached's default item size).

mod common;

use satchel_memcached::ClientMode;

/// One server, the default (tokio) client.
mod one_server {
    use super::*;
    satchel_core::conformance_suite!("MEMCACHED", async {
        common::connect(&common::url(), ClientMode::Async).await
    });
}

/// One server, the blocking client on tokio's blocking pool.
mod one_server_blocking_client {
    use super::*;
    satchel_core::conformance_suite!("MEMCACHED", async {
        common::connect(&common::url(), ClientMode::Blocking).await
    });
}

/// Keys spread over two servers by the client's hashing.
mod two_servers {
    use super::*;
    satchel_core::conformance_suite!("MEMCACHED", async {
        let servers = format!("{},{}", common::url(), common::url2());
        common::connect(&servers, ClientMode::Async).await
    });
}
