//! The MPI calls the `mpi` crate does not wrap (cargo feature `mpi`).

/// Makes MPI errors on `MPI_COMM_WORLD` return to the caller instead of aborting the whole job
/// (MPI's default): a pool over MPI ranks outlives a rank that died, noticing it by silence
/// (see `pool::backend::mpi`). Called once, right after MPI is initialised.
pub(crate) fn errors_return() {
    // SAFETY: MPI is initialised (the caller holds the universe); both arguments are MPI's own
    // predefined handles, which the library's C shim exports as constants.
    unsafe {
        mpi::ffi::MPI_Comm_set_errhandler(
            mpi::ffi::RSMPI_COMM_WORLD,
            mpi::ffi::RSMPI_ERRORS_RETURN,
        );
    }
}
