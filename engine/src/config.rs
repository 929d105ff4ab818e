use crate::uri::UriCheck;

/// The engine's configuration: what the `io` layer read from the config file, minus everything about sockets.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub realms: Vec<RealmConfig>,
    /// Seed of the ID generator (the binary draws it from the OS; tests fix it).
    pub seed: u64,
    /// Free-form router name reported in WELCOME `details.x_router`... kept out of WELCOME unless set.
    pub agent: String,
}

/// One realm.
#[derive(Clone, Debug)]
pub struct RealmConfig {
    pub name: String,
    /// URI rule for topics and procedures in this realm.
    pub uri_check: UriCheck,
}

impl RealmConfig {
    pub fn new(name: &str) -> RealmConfig {
        RealmConfig {
            name: name.to_owned(),
            uri_check: UriCheck::Loose,
        }
    }
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            realms: vec![RealmConfig::new("realm1")],
            seed: 0x6b72_6569_7365_6c21,
            agent: agent(),
        }
    }
}

/// `kreisel-<version>`.
pub fn agent() -> String {
    format!("kreisel-{}", env!("CARGO_PKG_VERSION"))
}
