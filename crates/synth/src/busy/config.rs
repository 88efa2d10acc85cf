//! What the busy-capture generator is asked for, what it reports, and its random source.

/// A small seeded generator (SplitMix64): the same seed gives the same capture everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Where the capture was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapturePoint {
    /// At the clients: their packets are seen as they leave.
    Client,
    /// At a gateway some way along each client's path.
    Middle,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct BusyConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Client hosts (each dual-stack).
    pub clients: usize,
    /// Services (names with VIPs).
    pub services: usize,
    /// Share of IPv4-only services.
    pub v4_only_share: f64,
    /// Physical backends with stable clocks (besides the random-offset, per-pair and proxy
    /// ones).
    pub backends: usize,
    /// Where the capture was taken.
    pub capture_point: CapturePoint,
    /// Happy Eyeballs races (IPv6 paths that fail or lag); off: every fetch makes one attempt.
    pub races: bool,
    /// Stale reuses of keep-alive connections; off: keep-alive connections are closed in time.
    pub stale: bool,
    /// New fetches per second, over all clients.
    pub fetches_per_s: f64,
    /// Response body per request, bytes.
    pub response_bytes: usize,
    /// Largest payload per segment.
    pub segment: usize,
}

impl Default for BusyConfig {
    fn default() -> Self {
        BusyConfig {
            seed: 1,
            clients: 1000,
            services: 300,
            v4_only_share: 0.25,
            backends: 8,
            capture_point: CapturePoint::Middle,
            races: true,
            stale: true,
            fetches_per_s: 40.0,
            response_bytes: 6000,
            segment: 1448,
        }
    }
}

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// After this many fetches started by arrival (follow-ups not counted).
    Fetches(u64),
    /// Once the file holds this many bytes.
    Bytes(u64),
    /// Once the file holds this many records (give or take the fetches in flight).
    Packets(u64),
}

/// The truth of one connection.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TruthConn {
    /// Client address.
    pub client: String,
    /// Client port.
    pub client_port: u16,
    /// Server address.
    pub server: String,
    /// Server port.
    pub server_port: u16,
    /// The client host (`C17`): both its addresses.
    pub host: String,
    /// The service's name.
    pub service: String,
    /// The fetch (one connection request of the client) the attempt belongs to.
    pub fetch: u64,
    /// The fetch again when its attempts reached two or more addresses (a race), else null.
    pub race: Option<u64>,
    /// `winner`, `also_ran` or `single`, as the contract defines them.
    pub role: String,
    /// The TCP timestamp clock the capture shows: `B3` (a backend), `X` (the proxy),
    /// `P:<client>><server>` (an offset per address pair), `R<n>` (random per connection).
    pub clock: String,
    /// The clock draws a random offset per connection.
    pub random_clock: bool,
    /// A request was sent on this connection after the server had given it up.
    pub stale: bool,
    /// 4 or 6.
    pub family: u8,
    /// First SYN, ms after the capture's start.
    pub syn_ms: f64,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Bytes of the capture.
    pub bytes: u64,
    /// Records.
    pub packets: u64,
    /// Fetches (follow-ups included).
    pub fetches: u64,
    /// Connections.
    pub connections: u64,
    /// Fetches whose attempts reached two or more addresses.
    pub races: u64,
    /// Stale reuses.
    pub stale: u64,
    /// Capture length, seconds.
    pub seconds: f64,
}
