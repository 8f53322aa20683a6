/* scripts/hello-mpi.c: smallest possible check that an MPI job is ONE job of the expected size.
 *
 *   usage: hello-mpi [EXPECTED_SIZE]
 *
 * Every rank prints "hello-mpi: rank R of S on HOST (LIBRARY)".  Exits 1 (on every rank) when
 * EXPECTED_SIZE is given and differs from MPI_COMM_WORLD's size: a launcher/PMI mismatch (e.g.
 * MPICH under `srun --mpi=none|pmix`) silently starts N singleton jobs of size 1 instead of one
 * job of size N.  An allreduce of the rank numbers also proves the ranks really talk to each other.
 *
 * Build: mpicc.mpich -O2 -o hello_mpich hello-mpi.c;  mpicc.openmpi -O2 -o hello_ompi hello-mpi.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rank = -1, size = -1, expected = -1, sum = -1, len = 0;
    char host[256] = "?", lib[MPI_MAX_LIBRARY_VERSION_STRING] = "?";

    if (argc > 2 || (argc == 2 && (atoi(argv[1]) <= 0))) {
        fprintf(stderr, "usage: %s [EXPECTED_SIZE>0]\n", argv[0]);
        return 2;
    }
    if (argc == 2)
        expected = atoi(argv[1]);

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, "\n,")] = '\0'; /* first line/field only: "MPICH Version: 4.0.2" etc. */
    for (char *c = lib; *c; c++)
        if (*c == '\t')
            *c = ' ';
    gethostname(host, sizeof host - 1);

    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("hello-mpi: rank %d of %d on %s (%s)\n", rank, size, host, lib);
    fflush(stdout);

    int rc = 0;
    if (sum != size * (size - 1) / 2) {
        fprintf(stderr, "hello-mpi: rank %d: allreduce gave %d, expected %d\n", rank, sum,
                size * (size - 1) / 2);
        rc = 1;
    }
    if (expected > 0 && size != expected) {
        fprintf(stderr, "hello-mpi: rank %d: communicator size %d != expected %d "
                        "(wrong --mpi= plugin / PMI?)\n", rank, size, expected);
        rc = 1;
    }
    MPI_Finalize();
    return rc;
}
