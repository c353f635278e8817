//! How a SCSI command moves its data without knowing the transport: the transport (iSCSI)
//! implements [`DataTransfer`] with R2T/Data-Out and Data-In PDUs. Data arrives and leaves in
//! pool buffers of at most one buffer's size per call, so a large command streams through one
//! buffer instead of allocating its whole length.

use ringsan_engine::buffer::Buf;

/// Why the transport could not move data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The task was aborted (task management, reinstatement, PREEMPT AND ABORT).
    #[error("task aborted")]
    Aborted,
    /// The connection is gone.
    #[error("connection lost")]
    ConnectionLost,
    /// The initiator's data failed its digest (ERL 0 cannot recover it).
    #[error("data digest error")]
    DigestError,
    /// The initiator broke the protocol while sending data.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// The data path of one command.
#[allow(async_fn_in_trait)]
pub trait DataTransfer {
    /// The length the initiator expects to transfer (iSCSI Expected Data Transfer Length).
    fn expected_len(&self) -> u64;

    /// Size of one pool buffer: the most a single `receive` or `send` moves.
    fn chunk_bytes(&self) -> usize;

    /// Tells the transport how many bytes the command itself wants to move (from the CDB), so
    /// residuals can be reported; call before the first `receive` or `send`.
    fn set_command_len(&mut self, bytes: u64);

    /// The next `len` bytes of Data-Out, in one buffer (`buf.len() == len`).
    async fn receive(&mut self, len: usize) -> Result<Buf, TransferError>;

    /// Sends `buf[..len]` as the next Data-In. `last_good`: this is the last of the data and the
    /// command has succeeded, so the status may ride on the last Data-In PDU.
    async fn send(&mut self, buf: Buf, len: usize, last_good: bool) -> Result<(), TransferError>;

    /// Sends a small Data-In payload built in memory (INQUIRY, MODE SENSE, ...).
    async fn send_bytes(&mut self, data: Vec<u8>, last_good: bool) -> Result<(), TransferError>;

    /// A free pool buffer (for reads and scratch space).
    async fn buffer(&mut self) -> Buf;

    /// Whether the task has been aborted meanwhile.
    fn aborted(&self) -> bool;
}
