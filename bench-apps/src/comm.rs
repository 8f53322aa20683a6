//! A small safe wrapper over the raw MPI calls the benchmarks time.
//!
//! Why raw `mpi::ffi` and not rsmpi's safe API: the OSU bandwidth method posts
//! a window of 64 non-blocking operations on ONE buffer. Safe rsmpi cannot
//! express that (each request borrows its buffer mutably), and 64 separate
//! buffers cost ~25% at 1 MiB through cache misses, so the numbers would not
//! be comparable to OSU's. Every function here keeps the borrow of its buffers
//! for the whole time MPI may touch them (posts and completes inside one
//! call), which is what makes the wrapper sound.

use std::ffi::{c_int, c_void};

use mpi::ffi;

/// What `MPI_Type_get_name` calls the datatype of every byte buffer sent here
/// (`ffi::RSMPI_UINT8_T`): the `# Datatype:` line of `--format osu`.
pub const BYTE_TYPE_NAME: &str = "MPI_UINT8_T";
/// The datatype of the reductions (`reduce_sum_f32`, `allreduce_sum_f32`).
pub const REDUCE_TYPE_NAME: &str = "MPI_FLOAT";

/// MPI_COMM_WORLD with this process's rank and size.
pub struct World {
    comm: ffi::MPI_Comm,
    pub rank: i32,
    pub size: i32,
}

fn len_i32(len: usize) -> c_int {
    // Sizes are validated at parse time (<= 1 GiB), so this only guards bugs.
    c_int::try_from(len).expect("message length fits in an MPI count")
}

impl World {
    /// The world communicator. MPI must be initialised.
    pub fn new() -> World {
        // SAFETY: reading the RSMPI constant and querying rank/size of
        // MPI_COMM_WORLD is valid between MPI_Init and MPI_Finalize.
        unsafe {
            let comm = ffi::RSMPI_COMM_WORLD;
            let mut rank = 0;
            let mut size = 0;
            ffi::MPI_Comm_rank(comm, &mut rank);
            ffi::MPI_Comm_size(comm, &mut size);
            World { comm, rank, size }
        }
    }

    pub fn barrier(&self) {
        // SAFETY: collective on a valid communicator.
        unsafe { ffi::MPI_Barrier(self.comm) };
    }

    /// Blocking send of `buf`.
    #[inline]
    pub fn send(&self, buf: &[u8], dest: i32, tag: i32) {
        // SAFETY: `buf` is valid for reads of buf.len() bytes for the call.
        unsafe {
            ffi::MPI_Send(
                buf.as_ptr() as *const c_void,
                len_i32(buf.len()),
                ffi::RSMPI_UINT8_T,
                dest,
                tag,
                self.comm,
            )
        };
    }

    /// Blocking receive into `buf`.
    #[inline]
    pub fn recv(&self, buf: &mut [u8], src: i32, tag: i32) {
        // SAFETY: `buf` is valid for writes of buf.len() bytes for the call.
        unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr() as *mut c_void,
                len_i32(buf.len()),
                ffi::RSMPI_UINT8_T,
                src,
                tag,
                self.comm,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
    }

    /// Post one MPI_Isend of `buf` per request slot.
    ///
    /// # Safety
    /// `buf` must stay valid, and unmodified, until every request completes.
    #[inline]
    unsafe fn post_sends(&self, buf: &[u8], dest: i32, tag: i32, reqs: &mut [ffi::MPI_Request]) {
        for r in reqs.iter_mut() {
            // SAFETY: the caller keeps `buf` alive until the requests complete.
            unsafe {
                ffi::MPI_Isend(
                    buf.as_ptr() as *const c_void,
                    len_i32(buf.len()),
                    ffi::RSMPI_UINT8_T,
                    dest,
                    tag,
                    self.comm,
                    r,
                )
            };
        }
    }

    /// Post one MPI_Irecv into the same `buf` per request slot (the OSU method).
    ///
    /// # Safety
    /// `buf` must stay valid, and not be read or written, until every request completes.
    #[inline]
    unsafe fn post_recvs(&self, buf: &mut [u8], src: i32, tag: i32, reqs: &mut [ffi::MPI_Request]) {
        for r in reqs.iter_mut() {
            // SAFETY: the caller keeps `buf` alive and untouched until completion.
            unsafe {
                ffi::MPI_Irecv(
                    buf.as_mut_ptr() as *mut c_void,
                    len_i32(buf.len()),
                    ffi::RSMPI_UINT8_T,
                    src,
                    tag,
                    self.comm,
                    r,
                )
            };
        }
    }

    /// Complete every request.
    #[inline]
    fn wait_all(reqs: &mut [ffi::MPI_Request]) {
        // SAFETY: the slice holds valid (or null) requests.
        unsafe {
            ffi::MPI_Waitall(
                len_i32(reqs.len()),
                reqs.as_mut_ptr(),
                ffi::RSMPI_STATUSES_IGNORE,
            )
        };
    }

    /// Post `reqs.len()` non-blocking sends of the same buffer, then wait for all.
    #[inline]
    pub fn send_window(&self, buf: &[u8], dest: i32, tag: i32, reqs: &mut [ffi::MPI_Request]) {
        // SAFETY: every request is completed by wait_all before `buf` is released.
        unsafe { self.post_sends(buf, dest, tag, reqs) };
        Self::wait_all(reqs);
    }

    /// Post `reqs.len()` non-blocking receives into the same buffer (the OSU
    /// method), then wait for all.
    #[inline]
    pub fn recv_window(&self, buf: &mut [u8], src: i32, tag: i32, reqs: &mut [ffi::MPI_Request]) {
        // SAFETY: every request is completed by wait_all before `buf` is released.
        unsafe { self.post_recvs(buf, src, tag, reqs) };
        Self::wait_all(reqs);
    }

    /// Bidirectional window (osu_bibw): post the receives, then the sends,
    /// wait for the sends, then for the receives.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn exchange_window(
        &self,
        sbuf: &[u8],
        rbuf: &mut [u8],
        peer: i32,
        send_tag: i32,
        recv_tag: i32,
        send_reqs: &mut [ffi::MPI_Request],
        recv_reqs: &mut [ffi::MPI_Request],
    ) {
        // SAFETY: both request arrays are completed before the buffers are released.
        unsafe {
            self.post_recvs(rbuf, peer, recv_tag, recv_reqs);
            self.post_sends(sbuf, peer, send_tag, send_reqs);
        }
        Self::wait_all(send_reqs);
        Self::wait_all(recv_reqs);
    }

    pub fn new_requests(n: usize) -> Vec<ffi::MPI_Request> {
        // SAFETY: reading an MPI constant.
        vec![unsafe { ffi::RSMPI_REQUEST_NULL }; n]
    }

    #[inline]
    pub fn bcast(&self, buf: &mut [u8], root: i32) {
        // SAFETY: `buf` valid for the collective's duration.
        unsafe {
            ffi::MPI_Bcast(
                buf.as_mut_ptr() as *mut c_void,
                len_i32(buf.len()),
                ffi::RSMPI_UINT8_T,
                root,
                self.comm,
            )
        };
    }

    /// Sum of f32 vectors to `root` (osu_reduce uses MPI_FLOAT / MPI_SUM).
    #[inline]
    pub fn reduce_sum_f32(&self, send: &[f32], recv: &mut [f32], root: i32) {
        assert_eq!(send.len(), recv.len());
        // SAFETY: both buffers valid for send.len() floats.
        unsafe {
            ffi::MPI_Reduce(
                send.as_ptr() as *const c_void,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(send.len()),
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_SUM,
                root,
                self.comm,
            )
        };
    }

    #[inline]
    pub fn allreduce_sum_f32(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(send.len(), recv.len());
        // SAFETY: both buffers valid for send.len() floats.
        unsafe {
            ffi::MPI_Allreduce(
                send.as_ptr() as *const c_void,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(send.len()),
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_SUM,
                self.comm,
            )
        };
    }

    /// `block` bytes from every rank into `recv` (size * block bytes).
    #[inline]
    pub fn allgather(&self, send: &[u8], recv: &mut [u8]) {
        assert!(recv.len() >= send.len() * self.size as usize);
        // SAFETY: recv holds size * send.len() bytes.
        unsafe {
            ffi::MPI_Allgather(
                send.as_ptr() as *const c_void,
                len_i32(send.len()),
                ffi::RSMPI_UINT8_T,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(send.len()),
                ffi::RSMPI_UINT8_T,
                self.comm,
            )
        };
    }

    /// `block` bytes to and from every rank (send and recv hold size * block).
    #[inline]
    pub fn alltoall(&self, send: &[u8], recv: &mut [u8], block: usize) {
        let total = block * self.size as usize;
        assert!(send.len() >= total && recv.len() >= total);
        // SAFETY: both buffers hold size * block bytes.
        unsafe {
            ffi::MPI_Alltoall(
                send.as_ptr() as *const c_void,
                len_i32(block),
                ffi::RSMPI_UINT8_T,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(block),
                ffi::RSMPI_UINT8_T,
                self.comm,
            )
        };
    }

    /// `send.len()` bytes from every rank to `root` (recv holds size * len on root).
    #[inline]
    pub fn gather(&self, send: &[u8], recv: &mut [u8], root: i32) {
        if self.rank == root {
            assert!(recv.len() >= send.len() * self.size as usize);
        }
        // SAFETY: recv is only written on root, where its length was checked.
        unsafe {
            ffi::MPI_Gather(
                send.as_ptr() as *const c_void,
                len_i32(send.len()),
                ffi::RSMPI_UINT8_T,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(send.len()),
                ffi::RSMPI_UINT8_T,
                root,
                self.comm,
            )
        };
    }

    /// `recv.len()` bytes from `root` to every rank (send holds size * len on root).
    #[inline]
    pub fn scatter(&self, send: &[u8], recv: &mut [u8], root: i32) {
        if self.rank == root {
            assert!(send.len() >= recv.len() * self.size as usize);
        }
        // SAFETY: send is only read on root, where its length was checked.
        unsafe {
            ffi::MPI_Scatter(
                send.as_ptr() as *const c_void,
                len_i32(recv.len()),
                ffi::RSMPI_UINT8_T,
                recv.as_mut_ptr() as *mut c_void,
                len_i32(recv.len()),
                ffi::RSMPI_UINT8_T,
                root,
                self.comm,
            )
        };
    }

    /// Gather one f64 slice of equal length from every rank onto `root`.
    pub fn gather_f64(&self, values: &[f64], root: i32) -> Vec<f64> {
        let mut all = if self.rank == root {
            vec![0.0f64; values.len() * self.size as usize]
        } else {
            Vec::new()
        };
        // SAFETY: `all` holds size * len doubles on root; unused elsewhere.
        unsafe {
            ffi::MPI_Gather(
                values.as_ptr() as *const c_void,
                len_i32(values.len()),
                ffi::RSMPI_DOUBLE,
                all.as_mut_ptr() as *mut c_void,
                len_i32(values.len()),
                ffi::RSMPI_DOUBLE,
                root,
                self.comm,
            )
        };
        all
    }

    /// Gather a short string from every rank onto rank 0 (fixed slots, truncated
    /// at `slot` bytes on a char boundary).
    pub fn gather_strings(&self, s: &str, slot: usize) -> Vec<String> {
        let mut mine = vec![0u8; slot];
        let mut end = s.len().min(slot);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        mine[..end].copy_from_slice(&s.as_bytes()[..end]);
        let mut all = vec![
            0u8;
            if self.rank == 0 {
                slot * self.size as usize
            } else {
                0
            }
        ];
        self.gather(&mine, &mut all, 0);
        all.chunks(slot)
            .map(|c| {
                let n = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..n]).into_owned()
            })
            .collect()
    }

    /// Logical OR of a flag over all ranks (every rank gets the result).
    pub fn any(&self, flag: bool) -> bool {
        let send: c_int = flag.into();
        let mut recv: c_int = 0;
        // SAFETY: one int each way.
        unsafe {
            ffi::MPI_Allreduce(
                &send as *const c_int as *const c_void,
                &mut recv as *mut c_int as *mut c_void,
                1,
                ffi::RSMPI_INT32_T,
                ffi::RSMPI_MAX,
                self.comm,
            )
        };
        recv != 0
    }

    /// Broadcast a u64 from rank 0.
    pub fn bcast_u64(&self, v: u64) -> u64 {
        let mut b = v.to_le_bytes();
        self.bcast(&mut b, 0);
        u64::from_le_bytes(b)
    }
}

/// MPI_Wtime.
#[inline]
pub fn wtime() -> f64 {
    // SAFETY: valid between MPI_Init and MPI_Finalize.
    unsafe { ffi::MPI_Wtime() }
}

/// First line of MPI_Get_library_version.
pub fn library_version() -> String {
    let mut buf = vec![0u8; 8192];
    let mut len: c_int = 0;
    // SAFETY: the buffer is larger than MPI_MAX_LIBRARY_VERSION_STRING for
    // every implementation we know (MPICH 8192, Open MPI 256).
    unsafe {
        ffi::MPI_Get_library_version(buf.as_mut_ptr() as *mut std::ffi::c_char, &mut len);
    }
    let n = (len.max(0) as usize).min(buf.len());
    // Open MPI counts the terminating NUL in `len` (MPICH does not): the text
    // ends at the first NUL, or a NUL byte lands in every CSV row.
    let text = buf[..n].split(|&b| b == 0).next().unwrap_or(&[]);
    let full = String::from_utf8_lossy(text).into_owned();
    // MPICH separates words with tabs; keep one space so CSV and tables stay tidy.
    full.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
