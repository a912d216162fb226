//! Connection strings as they may appear in errors and logs.

/// The connection string without its password and query options, for error messages.
///
/// The query can hold secrets too (`authMechanismProperties`, `tlsCertificateKeyFilePassword`),
/// so it is replaced as a whole. The split follows the driver's: the query starts at the first
/// `?`, the user information ends at the last `@` before it.
pub(crate) fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        // Not a URI at all: show it only if it cannot be hiding credentials.
        return if uri.contains('@') || uri.contains(':') {
            "<connection string withheld>".to_owned()
        } else {
            uri.to_owned()
        };
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, _)) => (before, "?…"),
        None => (rest, ""),
    };
    let hosts_and_db = match before_query.rsplit_once('@') {
        Some((user_info, hosts)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            return format!("{scheme}://{user}:***@{hosts}{query}");
        }
        None => before_query,
    };
    format!("{scheme}://{hosts_and_db}{query}")
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn passwords_and_query_options_are_removed() {
        assert_eq!(
            redact_uri("mongodb://alice:s3cr%40t@db1:27017,db2/app?replicaSet=rs0"),
            "mongodb://alice:***@db1:27017,db2/app?…"
        );
        assert_eq!(
            redact_uri("mongodb+srv://bob:p@ss@cluster0.example.net/"),
            "mongodb+srv://bob:***@cluster0.example.net/"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27017"),
            "mongodb://127.0.0.1:27017"
        );
        assert_eq!(redact_uri("user:pw@host"), "<connection string withheld>");
        assert_eq!(redact_uri("localhost"), "localhost");
    }
}
