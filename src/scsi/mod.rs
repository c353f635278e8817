//! The SCSI layer (SPC-4, SBC-3): CDB decoding, sense data, INQUIRY and VPD pages, mode pages,
//! capacity, REPORT LUNS, supported opcodes and unit attentions. It turns CDBs into block
//! operations for the engine and knows nothing of iSCSI.
