//! Code values carried in PDU fields (RFC 7143 §11): reject reasons, task management functions
//! and responses, logout reasons and responses, async events, login stages and status codes,
//! SNACK types, SCSI task attributes and SCSI Response codes.

/// Reject PDU reason codes (RFC 7143 §11.17.1).
pub mod reject_reason {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const SNACK_REJECT: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    /// Too many immediate commands.
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_DATA_ACK: u8 = 0x08;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    /// Out of resources to generate a Target Transfer Tag.
    pub const LONG_OP_REJECT: u8 = 0x0a;
    /// RFC 3720's "Negotiation Reset"; deprecated by RFC 7143 and never sent.
    pub const DEPRECATED_NEGOTIATION_RESET: u8 = 0x0b;
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Task Management Function Request function codes (RFC 7143 §11.5.1).
pub mod tmf {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
    pub const TASK_REASSIGN: u8 = 8;
}

/// Task Management Function Response codes (RFC 7143 §11.6.1).
pub mod tmf_response {
    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    pub const REJECTED: u8 = 255;
}

/// Logout Request reason codes (RFC 7143 §11.14.1).
pub mod logout_reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_CONNECTION_FOR_RECOVERY: u8 = 2;
}

/// Logout Response codes (RFC 7143 §11.15.1).
pub mod logout_response {
    pub const SUCCESS: u8 = 0;
    pub const CID_NOT_FOUND: u8 = 1;
    pub const RECOVERY_NOT_SUPPORTED: u8 = 2;
    pub const CLEANUP_FAILED: u8 = 3;
}

/// Asynchronous Message event codes (RFC 7143 §11.9.1).
pub mod async_event {
    /// A SCSI asynchronous event; the sense data is in the data segment.
    pub const SCSI_ASYNC_EVENT: u8 = 0;
    /// Parameter3 holds the seconds the initiator has to log out.
    pub const LOGOUT_REQUEST: u8 = 1;
    /// Parameter1 = CID, Parameter2 = Time2Wait, Parameter3 = Time2Retain.
    pub const CONNECTION_DROP: u8 = 2;
    /// Parameter2 = Time2Wait, Parameter3 = Time2Retain.
    pub const SESSION_DROP: u8 = 3;
    /// Parameter3 holds the seconds the initiator has to start a Text negotiation.
    pub const NEGOTIATION_REQUEST: u8 = 4;
    pub const TASK_TERMINATION: u8 = 5;
    pub const VENDOR_SPECIFIC: u8 = 255;
}

/// Login stages for the CSG/NSG fields (RFC 7143 §11.12.3). Value 2 is reserved.
pub mod login_stage {
    pub const SECURITY: u8 = 0;
    pub const OPERATIONAL: u8 = 1;
    pub const FULL_FEATURE: u8 = 3;
}

/// Login Response Status-Class and Status-Detail (RFC 7143 §11.13.5), as `class << 8 | detail`.
/// See [`super::LoginResponse::status`].
pub mod login_status {
    pub const CLASS_SUCCESS: u8 = 0x00;
    pub const CLASS_REDIRECTION: u8 = 0x01;
    pub const CLASS_INITIATOR_ERROR: u8 = 0x02;
    pub const CLASS_TARGET_ERROR: u8 = 0x03;

    pub const SUCCESS: u16 = 0x0000;
    pub const TARGET_MOVED_TEMPORARILY: u16 = 0x0101;
    pub const TARGET_MOVED_PERMANENTLY: u16 = 0x0102;
    pub const INITIATOR_ERROR: u16 = 0x0200;
    pub const AUTHENTICATION_FAILURE: u16 = 0x0201;
    pub const AUTHORIZATION_FAILURE: u16 = 0x0202;
    pub const NOT_FOUND: u16 = 0x0203;
    pub const TARGET_REMOVED: u16 = 0x0204;
    pub const UNSUPPORTED_VERSION: u16 = 0x0205;
    pub const TOO_MANY_CONNECTIONS: u16 = 0x0206;
    pub const MISSING_PARAMETER: u16 = 0x0207;
    pub const CANT_INCLUDE_IN_SESSION: u16 = 0x0208;
    pub const SESSION_TYPE_NOT_SUPPORTED: u16 = 0x0209;
    pub const SESSION_DOES_NOT_EXIST: u16 = 0x020a;
    pub const INVALID_DURING_LOGIN: u16 = 0x020b;
    pub const TARGET_ERROR: u16 = 0x0300;
    pub const SERVICE_UNAVAILABLE: u16 = 0x0301;
    pub const OUT_OF_RESOURCES: u16 = 0x0302;
}

/// SCSI task attributes, the ATTR field of a SCSI Command (RFC 7143 §11.3.1). 5..=7 are
/// reserved.
pub mod task_attr {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}

/// SNACK types (RFC 7143 §11.16.1).
pub mod snack_type {
    pub const DATA_R2T: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA_ACK: u8 = 2;
    pub const R_DATA: u8 = 3;
}

/// SCSI Response "Response" codes (RFC 7143 §11.4.3). 0x80..=0xff are vendor-specific.
pub mod scsi_response {
    pub const COMMAND_COMPLETED: u8 = 0x00;
    pub const TARGET_FAILURE: u8 = 0x01;
}
