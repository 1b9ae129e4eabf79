//! Vivaldi network coordinates: where this node sits in a synthetic space in which the
//! distance between two nodes' coordinates predicts their round-trip time, so that a
//! node can estimate its RTT to a peer it has never measured.
//!
//! The algorithm is that of Dabek, Cox, Kaashoek and Morris, "Vivaldi: A Decentralized
//! Network Coordinate System" (SIGCOMM 2004): the adaptive timestep (§4.3) in the
//! height-vector model (§5.4). Each RTT sample against a peer's advertised coordinate
//! moves ours part of the way towards agreeing with the sample; the step is large while
//! we are unsure of our coordinate and small when the peer is the unsure one.
//!
//! This module owns the coordinate arithmetic and the update rule, nothing else: it does
//! no I/O, keeps no peer table and sends nothing. Its tuning is `[network.vivaldi]`,
//! [`VivaldiConfig`] in icn-config, which documents the defaults; this module checks it
//! against the protocol's coordinate bounds. Callers feed it samples and carry
//! coordinates on the wire. Those coordinates come from other nodes and are untrusted,
//! so every entry point checks them: a remote value must never make our coordinate
//! non-finite or out of range, and an update that would is refused.

use icn_config::VivaldiConfig;
use rand::Rng;
use std::time::Duration;

/// Dimensions of the Euclidean part of a coordinate. Two, plus the height: the paper
/// (§5.4-5.5) found that two dimensions with a height predict Internet RTTs about as
/// well as three or more plain dimensions, because the height absorbs the access-link
/// delay that every path from a node shares while the plane models the core. Fewer
/// dimensions also mean fewer bytes per advertised coordinate and fewer degrees of
/// freedom to settle.
pub const DIMENSIONS: usize = 2;

/// The largest magnitude, in seconds, a valid coordinate may have in any vector
/// component or in its height. A protocol bound rather than configuration, because
/// every node must agree on what it accepts from others; no RTT worth modelling comes
/// near it (samples above [`VivaldiConfig::max_rtt`], 10 s by default, are dropped), so
/// anything larger is garbage or an attack.
pub const MAX_COORDINATE_SECS: f64 = 100.0;

/// The largest error estimate a valid coordinate may claim. A fresh coordinate claims
/// 1.0 (predictions off by about 100 %). Our own error is clamped here so that a burst
/// of wild samples cannot make us discount every peer for long, and so that we never
/// advertise a coordinate other nodes would reject.
pub const MAX_ERROR: f64 = 1.5;

/// Two coordinates whose vectors are closer than this, in seconds, are one point in the
/// plane: the direction between them is rounding noise, so the update picks one at
/// random. A nanosecond is far below any RTT worth modelling.
const COINCIDENT_SECS: f64 = 1e-9;

/// A position in the height-vector space: a point in the plane plus a height. The
/// predicted RTT between two coordinates is the Euclidean distance of their vectors
/// plus both heights. All lengths are in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinate {
    /// The position in the plane, which models the network core.
    pub vector: [f64; DIMENSIONS],
    /// Added to every distance from this node: the delay of its access link, which
    /// every path to it crosses whatever the direction.
    pub height: f64,
    /// The node's own estimate of its relative prediction error: a moving average of
    /// `|predicted - measured| / measured`. It weighs how far samples move coordinates.
    pub error: f64,
}

impl Coordinate {
    /// Where every node starts: the centre of the plane, the default height floor
    /// ([`VivaldiConfig::DEFAULT_MIN_HEIGHT`], 10 µs) and an error of 1.0, i.e. no
    /// knowledge yet.
    pub fn origin() -> Self {
        Coordinate { vector: [0.0; DIMENSIONS], height: VivaldiConfig::DEFAULT_MIN_HEIGHT.as_secs_f64(), error: 1.0 }
    }

    /// Whether the coordinate is safe to compute with: every number finite, the height
    /// and error not negative, nothing beyond [`MAX_COORDINATE_SECS`] or [`MAX_ERROR`].
    /// Coordinates received from other nodes must pass this before they are used.
    pub fn is_valid(&self) -> bool {
        let in_range = |x: f64| x.is_finite() && x.abs() <= MAX_COORDINATE_SECS;
        self.vector.iter().all(|&x| in_range(x))
            && in_range(self.height)
            && self.height >= 0.0
            && self.error.is_finite()
            && (0.0..=MAX_ERROR).contains(&self.error)
    }

    /// The RTT these two coordinates predict. Meaningful only for valid coordinates;
    /// it never panics, and a distance that is not a finite number of seconds
    /// saturates to [`Duration::MAX`].
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        Duration::try_from_secs_f64(self.distance_secs(other)).unwrap_or(Duration::MAX)
    }

    fn distance_secs(&self, other: &Coordinate) -> f64 {
        norm(&difference(&self.vector, &other.vector)) + self.height + other.height
    }
}

/// A [`VivaldiConfig`] under which the update could diverge or produce invalid
/// coordinates.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VivaldiConfigError {
    #[error("vivaldi ce must be in (0, 1], got {0}")]
    ErrorWeight(f64),
    #[error("vivaldi cc must be in (0, 1], got {0}")]
    Timestep(f64),
    #[error("vivaldi min_height must be at most {max} s, got {0:?}", max = MAX_COORDINATE_SECS)]
    MinHeight(Duration),
    #[error("vivaldi max_rtt must be above zero and at most {max} s, got {0:?}", max = MAX_COORDINATE_SECS)]
    MaxRtt(Duration),
}

/// Checks the bounds documented on each field of `config`. Above 1, `ce` would make the
/// error average overshoot (even negative) and `cc` would move a coordinate past the
/// point the sample asks for, so both can diverge; heights and RTTs beyond
/// [`MAX_COORDINATE_SECS`] would produce coordinates other nodes reject.
pub fn validate(config: &VivaldiConfig) -> Result<(), VivaldiConfigError> {
    let unit_interval = |x: f64| x > 0.0 && x <= 1.0;
    if !unit_interval(config.ce) {
        return Err(VivaldiConfigError::ErrorWeight(config.ce));
    }
    if !unit_interval(config.cc) {
        return Err(VivaldiConfigError::Timestep(config.cc));
    }
    if config.min_height.as_secs_f64() > MAX_COORDINATE_SECS {
        return Err(VivaldiConfigError::MinHeight(config.min_height));
    }
    if config.max_rtt.is_zero() || config.max_rtt.as_secs_f64() > MAX_COORDINATE_SECS {
        return Err(VivaldiConfigError::MaxRtt(config.max_rtt));
    }
    Ok(())
}

/// This node's coordinate and the rule that refines it from RTT samples.
#[derive(Clone, Debug)]
pub struct Vivaldi {
    config: VivaldiConfig,
    coordinate: Coordinate,
}

impl Vivaldi {
    /// Starts at the [origin](Coordinate::origin), raised to the configured height floor.
    pub fn new(config: VivaldiConfig) -> Result<Self, VivaldiConfigError> {
        validate(&config)?;
        let mut coordinate = Coordinate::origin();
        coordinate.height = coordinate.height.max(config.min_height.as_secs_f64());
        Ok(Vivaldi { config, coordinate })
    }

    pub fn config(&self) -> &VivaldiConfig {
        &self.config
    }

    /// Our current coordinate, always valid: the one to advertise to peers.
    pub fn coordinate(&self) -> Coordinate {
        self.coordinate
    }

    /// The RTT to a peer predicted from its advertised coordinate, or `None` if that
    /// coordinate is invalid.
    pub fn estimate(&self, remote: &Coordinate) -> Option<Duration> {
        remote.is_valid().then(|| self.coordinate.distance_to(remote))
    }

    /// Applies one RTT sample measured to the peer advertising `remote`. Returns whether
    /// the coordinate was updated; it is left unchanged for an invalid remote
    /// coordinate, a zero RTT, an RTT above [`VivaldiConfig::max_rtt`], or an update that
    /// would leave the valid range.
    pub fn observe(&mut self, remote: &Coordinate, rtt: Duration) -> bool {
        self.observe_with_rng(remote, rtt, &mut rand::thread_rng())
    }

    /// [`observe`](Self::observe) drawing the random direction, needed when the two
    /// coordinates coincide, from `rng`, so that simulations can be deterministic.
    pub fn observe_with_rng<R: Rng + ?Sized>(&mut self, remote: &Coordinate, rtt: Duration, rng: &mut R) -> bool {
        if !remote.is_valid() || rtt.is_zero() || rtt > self.config.max_rtt {
            return false;
        }
        let rtt = rtt.as_secs_f64();
        let local = self.coordinate;
        let predicted = local.distance_secs(remote);

        // Our share of the combined uncertainty: we move far when we know less than the
        // peer, barely when the peer is the one still guessing.
        let combined_error = local.error + remote.error;
        let weight = if combined_error > 0.0 {
            local.error / combined_error
        } else {
            // Both claim perfect predictions; neither deserves more trust.
            0.5
        };
        let sample_error = (predicted - rtt).abs() / rtt;
        let error_gain = self.config.ce * weight;
        let error = (sample_error * error_gain + local.error * (1.0 - error_gain)).min(MAX_ERROR);

        // Positive when we are predicted too close: move away from the peer and grow
        // the height; negative: move towards it and shrink the height.
        let step = self.config.cc * weight * (rtt - predicted);
        let (toward_local, height_share) = direction(&local, remote, rng);
        let mut vector = local.vector;
        for (x, u) in vector.iter_mut().zip(toward_local) {
            *x += step * u;
        }
        let height = (local.height + step * height_share).max(self.config.min_height.as_secs_f64());

        let next = Coordinate { vector, height, error };
        if !next.is_valid() {
            return false;
        }
        self.coordinate = next;
        true
    }
}

/// The unit direction from `remote` to `local` in the height-vector model, as its
/// plane part and its height part. There the difference of two coordinates is the
/// difference of their vectors with the sum of their heights, and its length is the
/// Euclidean length plus that height, so the plane part's length and the height part
/// add up to 1.
fn direction<R: Rng + ?Sized>(local: &Coordinate, remote: &Coordinate, rng: &mut R) -> ([f64; DIMENSIONS], f64) {
    let apart = difference(&local.vector, &remote.vector);
    let gap = norm(&apart);
    if gap < COINCIDENT_SECS {
        // Heights alone can never separate two nodes at the same point, and every node
        // starts at the origin: without a random direction the plane would stay unused.
        // Split the step evenly between a random direction and the height rather than
        // push in the plane only: in simulation the plane-only push settled into folded
        // maps more often (1 % of runs still 7.5 % off after 1000 rounds, against 1.8 %).
        return (random_unit_vector(rng).map(|x| x / 2.0), 0.5);
    }
    let heights = local.height + remote.height;
    let length = gap + heights;
    (apart.map(|x| x / length), heights / length)
}

/// A direction drawn uniformly: a point drawn uniformly in the unit ball (by rejecting
/// points of the enclosing cube outside it), scaled to length 1. Points too near the
/// centre are rejected too, since their direction would be mostly rounding.
fn random_unit_vector<R: Rng + ?Sized>(rng: &mut R) -> [f64; DIMENSIONS] {
    loop {
        let candidate: [f64; DIMENSIONS] = std::array::from_fn(|_| rng.gen_range(-1.0..=1.0));
        let length = norm(&candidate);
        if length > 1e-3 && length <= 1.0 {
            return candidate.map(|x| x / length);
        }
    }
}

fn difference(a: &[f64; DIMENSIONS], b: &[f64; DIMENSIONS]) -> [f64; DIMENSIONS] {
    std::array::from_fn(|i| a[i] - b[i])
}

fn norm(v: &[f64; DIMENSIONS]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Coordinate {
    /// A coordinate received from the network; `None` unless it has this build's number
    /// of dimensions and passes [`Coordinate::is_valid`].
    pub fn from_proto(c: &icn_proto::net::v1::Coordinate) -> Option<Coordinate> {
        let vector: [f64; DIMENSIONS] = c.vector.as_slice().try_into().ok()?;
        let coordinate = Coordinate { vector, height: c.height, error: c.error };
        coordinate.is_valid().then_some(coordinate)
    }

    pub fn to_proto(&self) -> icn_proto::net::v1::Coordinate {
        icn_proto::net::v1::Coordinate { vector: self.vector.to_vec(), height: self.height, error: self.error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn millis(ms: f64) -> Duration {
        Duration::from_secs_f64(ms / 1000.0)
    }

    fn relative_error(predicted: Duration, actual: Duration) -> f64 {
        (predicted.as_secs_f64() - actual.as_secs_f64()).abs() / actual.as_secs_f64()
    }

    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(|a, b| a.total_cmp(b));
        let mid = values.len() / 2;
        if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        }
    }

    /// Eight nodes on a hidden map: positions in the plane and access-link delays, in
    /// milliseconds. The true RTT is what the height-vector model assumes, so a good fit
    /// exists; noise on the samples keeps the nodes from reaching it exactly.
    struct HiddenNetwork {
        positions: Vec<[f64; 2]>,
        access: Vec<f64>,
    }

    impl HiddenNetwork {
        fn new() -> Self {
            HiddenNetwork {
                positions: vec![
                    [0.0, 0.0],
                    [22.0, 6.0],
                    [8.0, 30.0],
                    [-18.0, 20.0],
                    [30.0, -22.0],
                    [-26.0, -14.0],
                    [4.0, -32.0],
                    [-4.0, 12.0],
                ],
                access: vec![2.0, 1.0, 4.0, 1.5, 3.0, 0.5, 6.0, 2.5],
            }
        }

        fn len(&self) -> usize {
            self.positions.len()
        }

        fn rtt(&self, a: usize, b: usize) -> Duration {
            let [ax, ay] = self.positions[a];
            let [bx, by] = self.positions[b];
            millis(((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() + self.access[a] + self.access[b])
        }
    }

    #[test]
    fn eight_nodes_learn_to_predict_every_rtt_even_for_a_pair_that_never_measured() {
        let network = HiddenNetwork::new();
        let n = network.len();
        for a in 0..n {
            for b in a + 1..n {
                let rtt = network.rtt(a, b);
                assert!(rtt >= millis(5.0) && rtt <= millis(80.0), "the map spans 5-80 ms, {a}-{b} is {rtt:?}");
            }
        }
        // Nodes 0 and 1 never exchange a sample: their estimate must come from the rest.
        let never_measured = (0, 1);
        let measured = |a: usize, b: usize| (a.min(b), a.max(b)) != never_measured;

        let mut rng = StdRng::seed_from_u64(7);
        let mut nodes: Vec<Vivaldi> = (0..n).map(|_| Vivaldi::new(VivaldiConfig::default()).unwrap()).collect();
        for _round in 0..500 {
            for a in 0..n {
                let b = loop {
                    let b = rng.gen_range(0..n);
                    if b != a && measured(a, b) {
                        break b;
                    }
                };
                let noise = 1.0 + rng.gen_range(-0.05..=0.05);
                let sample = network.rtt(a, b).mul_f64(noise);
                let remote = nodes[b].coordinate();
                assert!(nodes[a].observe_with_rng(&remote, sample, &mut rng));
            }
        }

        let mut errors = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let predicted = nodes[a].estimate(&nodes[b].coordinate()).unwrap();
                errors.push(relative_error(predicted, network.rtt(a, b)));
            }
        }
        let (a, b) = never_measured;
        let never_measured_error =
            relative_error(nodes[a].estimate(&nodes[b].coordinate()).unwrap(), network.rtt(a, b));

        // Measured, not hoped for: with this seed the median error is 1.5 % and the
        // unmeasured pair is off by 6 %. Run with seeds 0..1000, the median never exceeded
        // 8 % and the unmeasured pair 22.5 % (99 % of seeds: 5 % and 13 %), and no node
        // claimed an error above 0.26. So these bounds hold for any seed, not just a lucky
        // one, and still fail if the update stops converging (after 50 rounds the median
        // is about 13 %).
        let median_error = median(errors);
        assert!(median_error < 0.10, "median relative error {median_error:.3}");
        assert!(never_measured_error < 0.25, "never-measured pair off by {never_measured_error:.3}");
        for node in &nodes {
            let c = node.coordinate();
            assert!(c.is_valid() && c.error < 0.5, "every node grew confident in its coordinate: {c:?}");
        }
    }

    #[test]
    fn garbage_from_a_peer_is_refused_and_leaves_our_coordinate_untouched() {
        let mut node = Vivaldi::new(VivaldiConfig::default()).unwrap();
        let peer = Coordinate { vector: [0.02, -0.01], height: 0.001, error: 0.3 };
        assert!(node.observe(&peer, millis(30.0)));
        let before = node.coordinate();

        let garbage = [
            Coordinate { vector: [f64::NAN, 0.0], ..peer },
            Coordinate { vector: [0.0, f64::INFINITY], ..peer },
            Coordinate { height: -0.001, ..peer },
            Coordinate { height: f64::NAN, ..peer },
            Coordinate { error: -0.1, ..peer },
            Coordinate { error: f64::NAN, ..peer },
            Coordinate { error: MAX_ERROR * 2.0, ..peer },
            Coordinate { vector: [MAX_COORDINATE_SECS * 10.0, 0.0], ..peer },
            Coordinate { height: MAX_COORDINATE_SECS * 10.0, ..peer },
        ];
        for remote in &garbage {
            assert!(!remote.is_valid(), "{remote:?} is invalid");
            assert!(!node.observe(remote, millis(30.0)), "{remote:?} is refused");
            assert_eq!(node.estimate(remote), None, "{remote:?} gives no estimate");
        }
        assert!(!node.observe(&peer, Duration::ZERO), "a zero RTT is refused");
        let over_max = node.config().max_rtt + Duration::from_millis(1);
        assert!(!node.observe(&peer, over_max), "an RTT above max_rtt is an outlier");
        assert_eq!(node.coordinate(), before);
    }

    #[test]
    fn two_fresh_nodes_at_the_origin_move_apart_after_one_sample() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = Vivaldi::new(VivaldiConfig::default()).unwrap();
        let b = Vivaldi::new(VivaldiConfig::default()).unwrap();
        assert_eq!(a.coordinate(), b.coordinate());

        assert!(a.observe_with_rng(&b.coordinate(), millis(20.0), &mut rng));

        let moved = a.coordinate();
        assert!(moved.is_valid(), "{moved:?}");
        assert!(norm(&moved.vector) > 0.0, "a left the origin in the plane: {moved:?}");
        assert!(moved.height > b.coordinate().height, "a grew its height: {moved:?}");
        let at_origin = b.coordinate().distance_to(&b.coordinate());
        assert!(a.estimate(&b.coordinate()).unwrap() > at_origin, "the predicted RTT grew towards 20 ms");
    }

    #[test]
    fn a_peer_advertising_extreme_but_valid_coordinates_moves_ours_only_within_range() {
        let mut node = Vivaldi::new(VivaldiConfig::default()).unwrap();
        let corner = Coordinate { vector: [MAX_COORDINATE_SECS; DIMENSIONS], height: MAX_COORDINATE_SECS, error: 0.0 };
        let opposite = Coordinate { vector: [-MAX_COORDINATE_SECS; DIMENSIONS], ..corner };
        for i in 0..1000 {
            let remote = if i % 2 == 0 { corner } else { opposite };
            let rtt = if i % 3 == 0 { Duration::from_nanos(1) } else { node.config().max_rtt };
            node.observe(&remote, rtt);
            let c = node.coordinate();
            assert!(c.is_valid(), "after {i} hostile samples: {c:?}");
            assert!(c.height >= node.config().min_height.as_secs_f64());
        }
    }

    #[test]
    fn configs_that_could_diverge_are_refused() {
        let default = VivaldiConfig::default();
        assert_eq!(validate(&default), Ok(()));
        let bad = [
            VivaldiConfig { ce: 0.0, ..default.clone() },
            VivaldiConfig { ce: 1.5, ..default.clone() },
            VivaldiConfig { cc: f64::NAN, ..default.clone() },
            VivaldiConfig { cc: 2.0, ..default.clone() },
            VivaldiConfig { min_height: Duration::from_secs(1000), ..default.clone() },
            VivaldiConfig { max_rtt: Duration::ZERO, ..default.clone() },
            VivaldiConfig { max_rtt: Duration::from_secs(1000), ..default.clone() },
        ];
        for config in bad {
            assert!(Vivaldi::new(config.clone()).is_err(), "{config:?} is refused");
        }
    }

    #[test]
    fn a_node_starts_at_its_configured_height_floor() {
        let config = VivaldiConfig { min_height: Duration::from_millis(2), ..VivaldiConfig::default() };
        let node = Vivaldi::new(config).unwrap();
        assert_eq!(node.coordinate().height, 0.002);
        assert_eq!(node.coordinate().vector, [0.0; DIMENSIONS]);
        assert_eq!(node.coordinate().error, 1.0);
    }
}
