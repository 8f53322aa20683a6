/*
 * osu_ref: a minimal C reference for two OSU Micro-Benchmarks 7.x methods,
 * osu_latency and osu_bw (MPI_CHAR, host buffers, single buffer), written
 * from the published method so that hybench can be compared against it on
 * the same machine, the same MPI and the same launch line.
 *
 *   osu_ref latency [-m [MIN:]MAX] [--span]
 *   osu_ref bw      [-m [MIN:]MAX] [--span]
 *
 * Method (OMB 7.x, c/mpi/pt2pt/standard/osu_{latency,bw}.c):
 *  - sizes MIN, 2*MIN, ... <= MAX (default 1 .. 4 MiB);
 *  - one page-aligned send and one receive buffer of MAX bytes per rank
 *    (posix_memalign), memset to 'a' / 'b' over `size` bytes before each size;
 *  - latency: 10000 iterations + 100 warm-up for size <= 8192, 1000 + 10 above;
 *    rank 0 Send/Recv, rank 1 Recv/Send, tag 1;
 *    latency_us = t_total * 1e6 / (2 * iterations);
 *  - bw: window 64, 100 iterations + 10 warm-up for size <= 8192, 20 + 2
 *    above; rank 0 posts 64 MPI_Isend of the SAME buffer (tag 100), Waitall,
 *    then a 4-byte MPI_Recv ack (tag 101); rank 1 posts 64 MPI_Irecv into the
 *    SAME buffer, Waitall, sends the ack;
 *    MB/s = size / 1e6 * iterations * 64 / t_total (10^6-byte MB);
 *  - MPI_Barrier before each size; the iteration/warm-up counts switch to the
 *    "large" values once and stay there, as in OMB.
 *
 * Timing: OMB 7.x reads MPI_Wtime at the start and the end of EVERY timed
 * iteration and sums the differences into t_total (this is what osu_latency
 * 7.2 prints).  OMB <= 6 read it once before the first timed iteration and
 * once after the last one.  The default here is the 7.x way; `--span` selects
 * the single-interval way, so the two can be compared on this machine (they
 * differ by the loop overhead outside the timed region versus one clock read
 * per iteration inside it).
 *
 * Output (rank 0, stdout): '#' comment lines, then "<size> <value>" per size,
 * latency in us, bandwidth in MB/s.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign, sysconf */

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Same constants as OMB 7.x (osu_util.h / osu_util_mpi.c). */
#define LARGE_MESSAGE_SIZE 8192
#define DEFAULT_MIN_SIZE 1
#define DEFAULT_MAX_SIZE (1 << 22)
#define LAT_ITERS 10000
#define LAT_SKIP 100
#define LAT_ITERS_LARGE 1000
#define LAT_SKIP_LARGE 10
#define BW_ITERS 100
#define BW_SKIP 10
#define BW_ITERS_LARGE 20
#define BW_SKIP_LARGE 2
#define WINDOW_SIZE 64

/*
 * Every MPI return is checked, as OMB's MPI_CHECK does.  MPI_ERRORS_ARE_FATAL
 * (set explicitly below) already aborts on error; the check is kept so that
 * a library configured otherwise cannot go on with garbage, and so that the
 * timed loops carry the same compare-and-branch as OMB's.
 */
#define MPI_CHECK(call)                                                        \
    do {                                                                       \
        int mpi_rc_ = (call);                                                  \
        if (mpi_rc_ != MPI_SUCCESS) {                                          \
            fprintf(stderr, "osu_ref: %s failed (rc %d) at %s:%d\n", #call,    \
                    mpi_rc_, __FILE__, __LINE__);                              \
            MPI_Abort(MPI_COMM_WORLD, 1);                                      \
        }                                                                      \
    } while (0)

enum bench { BENCH_LATENCY, BENCH_BW };

struct opts {
    enum bench bench;
    size_t min_size;
    size_t max_size;
    int span; /* 1: OMB <= 6 single-interval timing; 0: OMB 7.x per-iteration */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: osu_ref latency|bw [-m [MIN:]MAX] [--span]\n"
            "  run under MPI with exactly 2 ranks, e.g.\n"
            "  mpiexec.mpich -n 2 -bind-to core osu_ref latency -m 1:8K\n"
            "  -m [MIN:]MAX  message sizes MIN..MAX bytes, powers of two from MIN\n"
            "                (suffix K or M = 2^10 / 2^20; default 1:4M)\n"
            "  --span        time one interval over all timed iterations (OMB <= 6)\n"
            "                instead of summing per-iteration intervals (OMB 7.x)\n");
}

/* Parses "123", "8K", "4M" into bytes; returns 0 on success. */
static int parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (*s < '0' || *s > '9') {
        return 1;
    }
    v = strtoull(s, &end, 10);
    if (*end == 'K' || *end == 'k') {
        v <<= 10;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        v <<= 20;
        end++;
    }
    /* MPI counts are int: keep sizes within INT_MAX like OMB does. */
    if (*end != '\0' || v == 0 || v > (1ULL << 30)) {
        return 1;
    }
    *out = (size_t)v;
    return 0;
}

/* Returns 0 on success, 1 on bad usage, 2 when help was asked for. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    int i;

    o->min_size = DEFAULT_MIN_SIZE;
    o->max_size = DEFAULT_MAX_SIZE;
    o->span = 0;
    if (argc < 2) {
        return 1;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        return 2;
    }
    if (strcmp(argv[1], "latency") == 0) {
        o->bench = BENCH_LATENCY;
    } else if (strcmp(argv[1], "bw") == 0) {
        o->bench = BENCH_BW;
    } else {
        return 1;
    }
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return 2;
        } else if (strcmp(argv[i], "--span") == 0) {
            o->span = 1;
        } else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
            char buf[64];
            char *colon;

            i++;
            if (strlen(argv[i]) >= sizeof buf) {
                return 1;
            }
            strcpy(buf, argv[i]);
            colon = strchr(buf, ':');
            if (colon == NULL) { /* "MAX" */
                if (parse_size(buf, &o->max_size)) {
                    return 1;
                }
            } else {
                *colon = '\0';
                if (buf[0] != '\0' && parse_size(buf, &o->min_size)) {
                    return 1;
                }
                if (colon[1] != '\0' && parse_size(colon + 1, &o->max_size)) {
                    return 1;
                }
            }
        } else {
            return 1;
        }
    }
    return o->min_size <= o->max_size ? 0 : 1;
}

static void latency(int rank, const struct opts *o, char *s_buf, char *r_buf)
{
    int iters = LAT_ITERS, skip = LAT_SKIP;
    size_t size;
    MPI_Status st;

    if (rank == 0) {
        printf("# size_bytes latency_us\n");
    }
    for (size = o->min_size; size <= o->max_size; size *= 2) {
        const int n = (int)size;
        double t_start = 0.0, t_end = 0.0, t_total = 0.0;
        int i;

        /* OMB touches the buffers for each size (set_buffer_pt2pt). */
        memset(s_buf, 'a', size);
        memset(r_buf, 'b', size);
        if (size > LARGE_MESSAGE_SIZE) {
            iters = LAT_ITERS_LARGE;
            skip = LAT_SKIP_LARGE;
        }
        MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));

        if (rank == 0) {
            for (i = 0; i < iters + skip; i++) {
                if (o->span) {
                    if (i == skip) {
                        t_start = MPI_Wtime();
                    }
                } else if (i >= skip) {
                    t_start = MPI_Wtime();
                }
                MPI_CHECK(MPI_Send(s_buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD));
                MPI_CHECK(MPI_Recv(r_buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD, &st));
                if (!o->span && i >= skip) {
                    t_end = MPI_Wtime();
                    t_total += t_end - t_start;
                }
            }
            if (o->span) {
                t_end = MPI_Wtime();
                t_total = t_end - t_start;
            }
            printf("%zu %.4f\n", size, t_total * 1e6 / (2.0 * iters));
            fflush(stdout);
        } else {
            for (i = 0; i < iters + skip; i++) {
                MPI_CHECK(MPI_Recv(r_buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD, &st));
                MPI_CHECK(MPI_Send(s_buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD));
            }
        }
    }
}

static void bandwidth(int rank, const struct opts *o, char *s_buf, char *r_buf)
{
    int iters = BW_ITERS, skip = BW_SKIP;
    size_t size;
    MPI_Request req[WINDOW_SIZE];
    MPI_Status st[WINDOW_SIZE];

    if (rank == 0) {
        printf("# size_bytes bandwidth_MB_per_s (MB = 1e6 bytes)\n");
    }
    for (size = o->min_size; size <= o->max_size; size *= 2) {
        const int n = (int)size;
        double t_start = 0.0, t_end = 0.0, t_total = 0.0;
        int i, j;

        memset(s_buf, 'a', size);
        memset(r_buf, 'b', size);
        if (size > LARGE_MESSAGE_SIZE) {
            iters = BW_ITERS_LARGE;
            skip = BW_SKIP_LARGE;
        }
        MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));

        if (rank == 0) {
            for (i = 0; i < iters + skip; i++) {
                if (o->span) {
                    if (i == skip) {
                        t_start = MPI_Wtime();
                    }
                } else if (i >= skip) {
                    t_start = MPI_Wtime();
                }
                /* The whole window reuses one send buffer, as OMB's default
                 * single-buffer mode does: it stays in cache. */
                for (j = 0; j < WINDOW_SIZE; j++) {
                    MPI_CHECK(MPI_Isend(s_buf, n, MPI_CHAR, 1, 100,
                                        MPI_COMM_WORLD, &req[j]));
                }
                MPI_CHECK(MPI_Waitall(WINDOW_SIZE, req, st));
                MPI_CHECK(MPI_Recv(r_buf, 4, MPI_CHAR, 1, 101, MPI_COMM_WORLD,
                                   &st[0]));
                if (!o->span && i >= skip) {
                    t_end = MPI_Wtime();
                    t_total += t_end - t_start;
                }
            }
            if (o->span) {
                t_end = MPI_Wtime();
                t_total = t_end - t_start;
            }
            printf("%zu %.2f\n", size,
                   (double)size / 1e6 * iters * WINDOW_SIZE / t_total);
            fflush(stdout);
        } else {
            for (i = 0; i < iters + skip; i++) {
                for (j = 0; j < WINDOW_SIZE; j++) {
                    MPI_CHECK(MPI_Irecv(r_buf, n, MPI_CHAR, 0, 100,
                                        MPI_COMM_WORLD, &req[j]));
                }
                MPI_CHECK(MPI_Waitall(WINDOW_SIZE, req, st));
                MPI_CHECK(MPI_Send(s_buf, 4, MPI_CHAR, 0, 101, MPI_COMM_WORLD));
            }
        }
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    int rank, nprocs, prc, len;
    char *s_buf = NULL, *r_buf = NULL;
    char libver[MPI_MAX_LIBRARY_VERSION_STRING];
    long page = sysconf(_SC_PAGESIZE);

    MPI_CHECK(MPI_Init(&argc, &argv));
    /* Default for MPI_COMM_WORLD already, but a wrong number must never be
     * printed after a failed call: make it explicit. */
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &nprocs));

    prc = parse_args(argc, argv, &o);
    if (prc != 0) {
        if (rank == 0) {
            if (prc == 1) {
                fprintf(stderr, "osu_ref: bad arguments\n");
            }
            usage(prc == 2 ? stdout : stderr);
        }
        MPI_CHECK(MPI_Finalize());
        return prc == 2 ? EXIT_SUCCESS : EXIT_FAILURE;
    }
    if (nprocs != 2) {
        if (rank == 0) {
            fprintf(stderr,
                    "osu_ref: this test requires exactly 2 MPI processes, "
                    "got %d (run: mpiexec -n 2 ...)\n",
                    nprocs);
        }
        MPI_CHECK(MPI_Finalize());
        return EXIT_FAILURE;
    }

    /* One page-aligned buffer pair of the largest size (OMB
     * allocate_memory_pt2pt); touched per size below. */
    if (page <= 0 || posix_memalign((void **)&s_buf, (size_t)page, o.max_size) ||
        posix_memalign((void **)&r_buf, (size_t)page, o.max_size)) {
        fprintf(stderr, "osu_ref: rank %d: cannot allocate 2 x %zu bytes\n",
                rank, o.max_size);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    if (rank == 0) {
        MPI_CHECK(MPI_Get_library_version(libver, &len));
        libver[strcspn(libver, "\n")] = '\0';
        printf("# osu_ref %s (OSU Micro-Benchmarks 7.x method, %s timing)\n",
               o.bench == BENCH_LATENCY ? "latency" : "bw",
               o.span ? "single-interval (OMB <= 6)" : "per-iteration (OMB 7.x)");
        printf("# MPI: %s\n", libver);
        fflush(stdout);
    }

    if (o.bench == BENCH_LATENCY) {
        latency(rank, &o, s_buf, r_buf);
    } else {
        bandwidth(rank, &o, s_buf, r_buf);
    }

    free(s_buf);
    free(r_buf);
    MPI_CHECK(MPI_Finalize());
    return EXIT_SUCCESS;
}
