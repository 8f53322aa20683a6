//! The benchmarks, each following the OSU Micro-Benchmarks 7.x method
//! (formulas in bench-apps/README.md), plus per-iteration samples and an
//! untimed validation pass.

use hybrun_core::stats::OverRanks;

use crate::cli::{Benchmark, Plan};
use crate::clock::{ClockKind, Stamps};
use crate::comm::{World, wtime};

/// Tags as OSU uses them (data 100 / ack 101 for bw; 1 for latency; bibw 10/100).
const TAG_LAT: i32 = 1;
const TAG_DATA: i32 = 100;
const TAG_ACK: i32 = 101;
const TAG_BIBW_BACK: i32 = 10;

/// One message size's outcome. Samples only exist on rank 0.
#[derive(Debug, Clone)]
pub struct SizeResult {
    pub size: u64,
    pub iterations: u64,
    pub warmup: u64,
    /// The value `osu_<bench>` prints for this size.
    pub osu_value: f64,
    pub message_rate: Option<f64>,
    /// (rank, per-iteration values in the benchmark's unit).
    pub samples: Vec<(u32, Vec<f64>)>,
    pub over_ranks: Option<OverRanks>,
    /// Some(true/false) when --validate ran.
    pub valid: Option<bool>,
}

/// A page-aligned byte buffer (OSU aligns its buffers to the page size).
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        const ALIGN: usize = 4096;
        let raw = vec![0u8; len + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf { raw, off, len }
    }
    pub fn get(&self, n: usize) -> &[u8] {
        &self.raw[self.off..self.off + n.min(self.len)]
    }
    pub fn get_mut(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.len);
        &mut self.raw[self.off..self.off + n]
    }
}

/// Deterministic validation pattern: depends on size, a seed (rank or block)
/// and the byte index, so a misplaced or stale byte is caught.
pub fn pattern_byte(size: u64, seed: u64, j: usize) -> u8 {
    let x = (size.wrapping_mul(0x9E37_79B9) ^ seed.wrapping_mul(0x85EB_CA6B))
        .wrapping_add(j as u64 * 131);
    (x ^ (x >> 7) ^ (j as u64 >> 8)) as u8
}

fn fill_pattern(buf: &mut [u8], size: u64, seed: u64) {
    for (j, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(size, seed, j);
    }
}

fn check_pattern(buf: &[u8], size: u64, seed: u64) -> Option<usize> {
    buf.iter()
        .enumerate()
        .position(|(j, &b)| b != pattern_byte(size, seed, j))
}

/// Context shared by all benchmarks.
pub struct Runner<'a> {
    pub world: &'a World,
    pub plan: &'a Plan,
    pub clock: ClockKind,
    pub validate: bool,
    pub corrupt: bool,
    /// First validation error seen on this rank (reported by rank 0 after reduce).
    pub local_error: Option<String>,
}

impl Runner<'_> {
    /// Run the planned sweep, calling `each` with every size's result as soon
    /// as it is known (so nothing measured is lost if a later size fails).
    pub fn run(&mut self, mut each: impl FnMut(&SizeResult)) -> Vec<SizeResult> {
        let max = *self.plan.sizes.iter().max().unwrap_or(&0) as usize;
        let mut out = Vec::new();
        let mut bufs = Buffers::new(self.plan.bench, max.max(4), self.world.size as usize);
        for &size in &self.plan.sizes {
            let r = match self.plan.bench {
                Benchmark::Latency => self.latency(size, &mut bufs),
                Benchmark::MultiLat => self.multi_lat(size, &mut bufs),
                Benchmark::Bw | Benchmark::Bibw => self.bw(size, &mut bufs),
                Benchmark::MbwMr => self.mbw_mr(size, &mut bufs),
                _ => self.collective(size, &mut bufs),
            };
            each(&r);
            let stop = r.valid == Some(false);
            out.push(r);
            if stop {
                // As OSU: stop at the first size that fails validation.
                break;
            }
        }
        out
    }

    fn counts(&self, size: u64) -> (u64, u64) {
        self.plan.counts.for_size(size)
    }

    /// Record a validation failure on this rank; `any` makes it collective.
    fn fail(&mut self, what: String) {
        if self.local_error.is_none() {
            self.local_error = Some(what);
        }
    }

    fn finish_validation(&mut self, local_ok: bool) -> Option<bool> {
        if !self.validate {
            return None;
        }
        Some(!self.world.any(!local_ok))
    }

    /// Apply the testing aid: flip one byte of what was just received.
    fn maybe_corrupt(&mut self, buf: &mut [u8]) {
        if self.corrupt && !buf.is_empty() {
            buf[buf.len() / 2] ^= 0x5A;
            self.corrupt = false;
        }
    }

    fn check(&mut self, buf: &[u8], size: u64, seed: u64, what: &str) -> bool {
        match check_pattern(buf, size, seed) {
            None => true,
            Some(j) => {
                self.fail(format!(
                    "{what}: size {size}: byte {j} is {:#04x}, expected {:#04x} (rank {})",
                    buf[j],
                    pattern_byte(size, seed, j),
                    self.world.rank
                ));
                false
            }
        }
    }

    // ----- point to point -----------------------------------------------------------

    /// osu_latency / osu_multi_lat ping-pong between `me` and `peer`; the
    /// lower rank of the pair times. Returns the stamps when this rank timed.
    fn pingpong(&self, size: u64, bufs: &mut Buffers, peer: i32, timer: bool) -> Option<Stamps> {
        let (iters, skip) = self.counts(size);
        let n = size as usize;
        let w = self.world;
        let mut st = Stamps::with_capacity(self.clock, iters as usize);
        let (s, r) = (&bufs.send, &mut bufs.recv);
        if timer {
            for i in 0..iters + skip {
                if i == skip {
                    st.start();
                } else if i > skip {
                    st.mark();
                }
                w.send(s.get(n), peer, TAG_LAT);
                w.recv(r.get_mut(n), peer, TAG_LAT);
            }
            st.end();
            Some(st)
        } else {
            for _ in 0..iters + skip {
                w.recv(r.get_mut(n), peer, TAG_LAT);
                w.send(s.get(n), peer, TAG_LAT);
            }
            None
        }
    }

    /// Untimed validation of one ping-pong: each side checks what it received.
    fn validate_pingpong(&mut self, size: u64, bufs: &mut Buffers, peer: i32, first: bool) -> bool {
        let n = size as usize;
        let me = self.world.rank as u64;
        fill_pattern(bufs.send.get_mut(n), size, me);
        let ok = if first {
            self.world.send(bufs.send.get(n), peer, TAG_LAT);
            self.world.recv(bufs.recv.get_mut(n), peer, TAG_LAT);
            self.check(bufs.recv.get(n), size, peer as u64, "ping-pong reply")
        } else {
            self.world.recv(bufs.recv.get_mut(n), peer, TAG_LAT);
            let mut tmp = bufs.recv.get(n).to_vec();
            self.maybe_corrupt(&mut tmp);
            let ok = self.check(&tmp, size, peer as u64, "ping-pong message");
            self.world.send(bufs.send.get(n), peer, TAG_LAT);
            ok
        };
        // Restore OSU's buffer contents for the next size.
        bufs.reset(n);
        ok
    }

    fn latency(&mut self, size: u64, bufs: &mut Buffers) -> SizeResult {
        let (iters, skip) = self.counts(size);
        bufs.reset(size as usize);
        self.world.barrier();
        let first = self.world.rank == 0;
        let peer = 1 - self.world.rank;
        let st = self.pingpong(size, bufs, peer, first);
        let valid = if self.validate {
            let ok = self.validate_pingpong(size, bufs, peer, first);
            self.finish_validation(ok)
        } else {
            None
        };
        let (osu_value, samples) = match st {
            Some(st) => {
                let one_way: Vec<f64> = st.durations().iter().map(|d| d * 1e6 / 2.0).collect();
                (st.wall() * 1e6 / (2.0 * iters as f64), vec![(0, one_way)])
            }
            None => (0.0, Vec::new()),
        };
        SizeResult {
            size,
            iterations: iters,
            warmup: skip,
            osu_value,
            message_rate: None,
            samples,
            over_ranks: None,
            valid,
        }
    }

    fn multi_lat(&mut self, size: u64, bufs: &mut Buffers) -> SizeResult {
        let (iters, skip) = self.counts(size);
        let pairs = self.plan.pairs as i32;
        let rank = self.world.rank;
        let active = rank < 2 * pairs;
        let (peer, first) = if rank < pairs {
            (rank + pairs, true)
        } else {
            (rank - pairs, false)
        };
        bufs.reset(size as usize);
        self.world.barrier();
        let st = if active {
            self.pingpong(size, bufs, peer, first)
        } else {
            None
        };
        let valid = if self.validate {
            let ok = if active {
                self.validate_pingpong(size, bufs, peer, first)
            } else {
                true
            };
            self.finish_validation(ok)
        } else {
            None
        };
        // Every rank contributes [is_timer, latency, samples...] so one gather suffices.
        let mut mine = vec![0.0; iters as usize + 2];
        if let Some(st) = &st {
            mine[0] = 1.0;
            mine[1] = st.wall() * 1e6 / (2.0 * iters as f64);
            for (slot, d) in mine[2..].iter_mut().zip(st.durations()) {
                *slot = d * 1e6 / 2.0;
            }
        }
        let all = self.world.gather_f64(&mine, 0);
        let mut samples = Vec::new();
        let mut lat_sum = 0.0;
        for (r, chunk) in all.chunks(mine.len()).enumerate() {
            if chunk[0] == 1.0 {
                lat_sum += chunk[1];
                samples.push((r as u32, chunk[2..].to_vec()));
            }
        }
        // osu_multi_lat: sum of the senders' latencies over the number of pairs.
        let osu_value = if pairs > 0 {
            lat_sum / pairs as f64
        } else {
            0.0
        };
        SizeResult {
            size,
            iterations: iters,
            warmup: skip,
            osu_value,
            message_rate: None,
            samples,
            over_ranks: None,
            valid,
        }
    }

    fn bw(&mut self, size: u64, bufs: &mut Buffers) -> SizeResult {
        let (iters, skip) = self.counts(size);
        let n = size as usize;
        let w = self.world;
        let window = self.plan.window as usize;
        let bidir = self.plan.bench == Benchmark::Bibw;
        let mut sreq = World::new_requests(window);
        let mut rreq = World::new_requests(window);
        let mut ack = [0u8; 4];
        bufs.reset(n);
        let mut st = Stamps::with_capacity(ClockKind::Wtime, iters as usize);
        w.barrier();
        {
            let (s, r) = (&bufs.send, &mut bufs.recv);
            if w.rank == 0 {
                for i in 0..iters + skip {
                    if i == skip {
                        st.start();
                    } else if i > skip {
                        st.mark();
                    }
                    if bidir {
                        w.exchange_window(
                            s.get(n),
                            r.get_mut(n),
                            1,
                            TAG_DATA,
                            TAG_BIBW_BACK,
                            &mut sreq,
                            &mut rreq,
                        );
                    } else {
                        w.send_window(s.get(n), 1, TAG_DATA, &mut sreq);
                        w.recv(&mut ack, 1, TAG_ACK);
                    }
                }
                st.end();
            } else {
                for _ in 0..iters + skip {
                    if bidir {
                        w.exchange_window(
                            s.get(n),
                            r.get_mut(n),
                            0,
                            TAG_BIBW_BACK,
                            TAG_DATA,
                            &mut sreq,
                            &mut rreq,
                        );
                    } else {
                        w.recv_window(r.get_mut(n), 0, TAG_DATA, &mut rreq);
                        w.send(&ack, 0, TAG_ACK);
                    }
                }
            }
        }
        let valid = if self.validate {
            let ok = self.validate_window(size, bufs, bidir);
            self.finish_validation(ok)
        } else {
            None
        };
        let factor = if bidir { 2.0 } else { 1.0 };
        let per_window_mb = size as f64 / 1e6 * window as f64 * factor;
        let (osu_value, samples) = if w.rank == 0 {
            let s: Vec<f64> = st.durations().iter().map(|d| per_window_mb / d).collect();
            (per_window_mb * iters as f64 / st.wall(), vec![(0, s)])
        } else {
            (0.0, Vec::new())
        };
        SizeResult {
            size,
            iterations: iters,
            warmup: skip,
            osu_value,
            message_rate: None,
            samples,
            over_ranks: None,
            valid,
        }
    }

    /// Untimed validation of one window: receivers check the received buffer.
    fn validate_window(&mut self, size: u64, bufs: &mut Buffers, bidir: bool) -> bool {
        let n = size as usize;
        let w = self.world;
        let window = self.plan.window as usize;
        let pairs = match self.plan.bench {
            Benchmark::MbwMr => self.plan.pairs as i32,
            _ => 1,
        };
        let rank = w.rank;
        let mut sreq = World::new_requests(window);
        let mut rreq = World::new_requests(window);
        fill_pattern(bufs.send.get_mut(n), size, rank as u64);
        let ok = if rank < pairs {
            let peer = rank + pairs;
            if bidir {
                w.exchange_window(
                    bufs.send.get(n),
                    bufs.recv.get_mut(n),
                    peer,
                    TAG_DATA,
                    TAG_BIBW_BACK,
                    &mut sreq,
                    &mut rreq,
                );
                let buf = bufs.recv.get(n).to_vec();
                self.check(&buf, size, peer as u64, "bibw window")
            } else {
                w.send_window(bufs.send.get(n), peer, TAG_DATA, &mut sreq);
                true
            }
        } else if rank < 2 * pairs {
            let peer = rank - pairs;
            if bidir {
                w.exchange_window(
                    bufs.send.get(n),
                    bufs.recv.get_mut(n),
                    peer,
                    TAG_BIBW_BACK,
                    TAG_DATA,
                    &mut sreq,
                    &mut rreq,
                );
            } else {
                w.recv_window(bufs.recv.get_mut(n), peer, TAG_DATA, &mut rreq);
            }
            let mut buf = bufs.recv.get(n).to_vec();
            self.maybe_corrupt(&mut buf);
            self.check(&buf, size, peer as u64, "window")
        } else {
            true
        };
        bufs.reset(n);
        ok
    }

    fn mbw_mr(&mut self, size: u64, bufs: &mut Buffers) -> SizeResult {
        let (iters, skip) = self.counts(size);
        let n = size as usize;
        let w = self.world;
        let window = self.plan.window as usize;
        let pairs = self.plan.pairs as i32;
        let mut reqs = World::new_requests(window);
        let mut ack = [0u8; 4];
        let mut times = Vec::with_capacity(iters as usize);
        bufs.reset(n);
        w.barrier();
        for i in 0..iters + skip {
            // osu_mbw_mr (7.x) synchronises every iteration and times only the window.
            w.barrier();
            if w.rank < pairs {
                let t0 = wtime();
                w.send_window(bufs.send.get(n), w.rank + pairs, TAG_DATA, &mut reqs);
                w.recv(&mut ack, w.rank + pairs, TAG_ACK);
                let t1 = wtime();
                if i >= skip {
                    times.push(t1 - t0);
                }
            } else if w.rank < 2 * pairs {
                w.recv_window(bufs.recv.get_mut(n), w.rank - pairs, TAG_DATA, &mut reqs);
                w.send(&ack, w.rank - pairs, TAG_ACK);
            }
        }
        let valid = if self.validate {
            let ok = self.validate_window(size, bufs, false);
            self.finish_validation(ok)
        } else {
            None
        };
        let (osu_value, rate, samples) = if w.rank == 0 {
            // As OSU: rank 0's time stands for all pairs.
            let mb = size as f64 / 1e6 * pairs as f64 * window as f64;
            let t: f64 = times.iter().sum();
            let bw = mb * iters as f64 / t;
            let s = times.iter().map(|d| mb / d).collect();
            (bw, Some(1e6 * bw / size as f64), vec![(0, s)])
        } else {
            (0.0, None, Vec::new())
        };
        SizeResult {
            size,
            iterations: iters,
            warmup: skip,
            osu_value,
            message_rate: rate,
            samples,
            over_ranks: None,
            valid,
        }
    }

    // ----- collectives ------------------------------------------------------------

    /// Run one call of the collective (size = bytes per rank or per message).
    #[inline]
    fn call(&self, size: usize, bufs: &mut Buffers) {
        let w = self.world;
        let p = w.size as usize;
        match self.plan.bench {
            Benchmark::Barrier => w.barrier(),
            Benchmark::Bcast => w.bcast(bufs.send.get_mut(size), 0),
            Benchmark::Reduce => {
                let k = size / 4;
                w.reduce_sum_f32(&bufs.fsend[..k], &mut bufs.frecv[..k], 0)
            }
            Benchmark::Allreduce => {
                let k = size / 4;
                w.allreduce_sum_f32(&bufs.fsend[..k], &mut bufs.frecv[..k])
            }
            Benchmark::Allgather => w.allgather(bufs.send.get(size), bufs.recv.get_mut(size * p)),
            Benchmark::Alltoall => {
                w.alltoall(bufs.send.get(size * p), bufs.recv.get_mut(size * p), size)
            }
            Benchmark::Gather => w.gather(bufs.send.get(size), bufs.recv.get_mut(size * p), 0),
            Benchmark::Scatter => w.scatter(bufs.send.get(size * p), bufs.recv.get_mut(size), 0),
            _ => unreachable!("not a collective"),
        }
    }

    fn collective(&mut self, size: u64, bufs: &mut Buffers) -> SizeResult {
        let (iters, skip) = self.counts(size);
        let n = size as usize;
        let w = self.world;
        let p = w.size as usize;
        bufs.reset(n * p);
        let mut times = Vec::with_capacity(iters as usize);
        w.barrier();
        for i in 0..iters + skip {
            let t0 = wtime();
            self.call(n, bufs);
            let t1 = wtime();
            if i >= skip {
                times.push(t1 - t0);
            }
            // OSU separates iterations with a barrier (not for the barrier test itself).
            if self.plan.bench != Benchmark::Barrier {
                w.barrier();
            }
        }
        let valid = if self.validate {
            let ok = self.validate_collective(size, bufs);
            self.finish_validation(ok)
        } else {
            None
        };
        let us: Vec<f64> = times.iter().map(|t| t * 1e6).collect();
        let my_mean = hybrun_core::stats::mean(&us);
        let all = w.gather_f64(&us, 0);
        let means = w.gather_f64(&[my_mean], 0);
        let (samples, over) = if w.rank == 0 {
            let s = all
                .chunks(us.len())
                .enumerate()
                .map(|(r, c)| (r as u32, c.to_vec()))
                .collect();
            (s, OverRanks::of(&means))
        } else {
            (Vec::new(), None)
        };
        // OSU prints the average over ranks of each rank's mean latency.
        let osu_value = over.map(|o| o.avg).unwrap_or(0.0);
        SizeResult {
            size,
            iterations: iters,
            warmup: skip,
            osu_value,
            message_rate: None,
            samples,
            over_ranks: over,
            valid,
        }
    }

    /// Untimed validation of one call with known data.
    fn validate_collective(&mut self, size: u64, bufs: &mut Buffers) -> bool {
        let n = size as usize;
        let w = self.world;
        let p = w.size as usize;
        let me = w.rank as u64;
        let ok = match self.plan.bench {
            Benchmark::Barrier => true,
            Benchmark::Bcast => {
                if me == 0 {
                    fill_pattern(bufs.send.get_mut(n), size, 0);
                } else {
                    bufs.send.get_mut(n).fill(0);
                }
                self.call(n, bufs);
                let mut got = bufs.send.get(n).to_vec();
                if me != 0 {
                    self.maybe_corrupt(&mut got);
                }
                self.check(&got, size, 0, "bcast")
            }
            Benchmark::Reduce | Benchmark::Allreduce => {
                let k = n / 4;
                // Small integers: the float sum is exact in any order.
                for (i, v) in bufs.fsend[..k].iter_mut().enumerate() {
                    *v = ((me + 1) * (i as u64 % 7 + 1)) as f32;
                }
                bufs.frecv[..k].fill(-1.0);
                self.call(n, bufs);
                let checks_result = self.plan.bench == Benchmark::Allreduce || me == 0;
                if self.corrupt && checks_result && k > 0 {
                    bufs.frecv[k / 2] += 1.0;
                    self.corrupt = false;
                }
                let tri = (p * (p + 1) / 2) as f32;
                let bad =
                    (0..k).find(|&i| checks_result && bufs.frecv[i] != tri * (i % 7 + 1) as f32);
                match bad {
                    None => true,
                    Some(i) => {
                        self.fail(format!(
                            "{}: size {size}: element {i} is {}, expected {} (rank {me})",
                            self.plan.bench.name(),
                            bufs.frecv[i],
                            tri * (i % 7 + 1) as f32
                        ));
                        false
                    }
                }
            }
            Benchmark::Allgather | Benchmark::Gather => {
                fill_pattern(bufs.send.get_mut(n), size, me);
                bufs.recv.get_mut(n * p).fill(0);
                self.call(n, bufs);
                if self.plan.bench == Benchmark::Gather && me != 0 {
                    true
                } else {
                    let mut got = bufs.recv.get(n * p).to_vec();
                    self.maybe_corrupt(&mut got);
                    let mut ok = true;
                    for (src, block) in got.chunks(n.max(1)).enumerate().take(p) {
                        ok &= self.check(block, size, src as u64, self.plan.bench.name());
                    }
                    ok
                }
            }
            Benchmark::Scatter => {
                if me == 0 {
                    for (dst, block) in bufs.send.get_mut(n * p).chunks_mut(n.max(1)).enumerate() {
                        fill_pattern(block, size, dst as u64);
                    }
                }
                self.call(n, bufs);
                let mut got = bufs.recv.get(n).to_vec();
                self.maybe_corrupt(&mut got);
                self.check(&got, size, me, "scatter")
            }
            Benchmark::Alltoall => {
                for (dst, block) in bufs.send.get_mut(n * p).chunks_mut(n.max(1)).enumerate() {
                    fill_pattern(block, size, me * 1_000_003 + dst as u64);
                }
                self.call(n, bufs);
                let mut got = bufs.recv.get(n * p).to_vec();
                self.maybe_corrupt(&mut got);
                let mut ok = true;
                for (src, block) in got.chunks(n.max(1)).enumerate().take(p) {
                    ok &= self.check(block, size, src as u64 * 1_000_003 + me, "alltoall");
                }
                ok
            }
            _ => unreachable!("not a collective"),
        };
        bufs.reset(n * p);
        ok
    }
}

/// Buffers sized once for the largest message (as OSU allocates up front).
pub struct Buffers {
    pub send: AlignedBuf,
    pub recv: AlignedBuf,
    pub fsend: Vec<f32>,
    pub frecv: Vec<f32>,
}

impl Buffers {
    fn new(bench: Benchmark, max: usize, ranks: usize) -> Buffers {
        let per = if matches!(
            bench,
            Benchmark::Allgather | Benchmark::Alltoall | Benchmark::Gather | Benchmark::Scatter
        ) {
            max * ranks
        } else {
            max
        };
        let floats = if matches!(bench, Benchmark::Reduce | Benchmark::Allreduce) {
            max / 4
        } else {
            0
        };
        Buffers {
            send: AlignedBuf::new(per),
            recv: AlignedBuf::new(per),
            fsend: vec![1.0; floats],
            frecv: vec![0.0; floats],
        }
    }

    /// OSU touches its buffers before each size: sender 'a', receiver 'b'.
    fn reset(&mut self, n: usize) {
        self.send.get_mut(n).fill(b'a');
        self.recv.get_mut(n).fill(b'b');
        self.fsend.fill(1.0);
        self.frecv.fill(0.0);
    }
}
