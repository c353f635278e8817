//! Task Management Function Request and Response (RFC 7143 §11.5, §11.6).

use super::bhs::{invalid, Bhs, Opcode, PduError};
use super::consts::tmf_response;

/// Task Management Function Request, opcode 0x02 (RFC 7143 §11.5).
///
/// Traps: the function byte's top bit is always 1 on the wire (`function` holds the low 7
/// bits; unknown functions decode and are answered with `tmf_response::NOT_SUPPORTED`).
/// `ref_task_tag` and `ref_cmdsn` matter for ABORT TASK (and TASK REASSIGN), where a
/// RefCmdSN inside the window but not yet received must be treated as received and answered
/// FUNCTION_COMPLETE; `exp_data_sn` matters only for TASK REASSIGN. It is usually immediate
/// and then does not advance CmdSN. No data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    /// See [`super::tmf`].
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub ref_task_tag: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub ref_cmdsn: u32,
    pub exp_data_sn: u32,
}

impl TaskMgmtRequest {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::TaskMgmtRequest)?;
        bhs.expect_no_data()?;
        Ok(TaskMgmtRequest {
            immediate: bhs.immediate(),
            function: bhs.u8_at(1) & 0x7f,
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ref_task_tag: bhs.u32_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
            ref_cmdsn: bhs.u32_at(32),
            exp_data_sn: bhs.u32_at(36),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TaskMgmtRequest, self.immediate);
        b.set_u8(1, 0x80 | (self.function & 0x7f));
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ref_task_tag);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b.set_u32(32, self.ref_cmdsn);
        b.set_u32(36, self.exp_data_sn);
        b
    }
}

/// Task Management Function Response, opcode 0x22 (RFC 7143 §11.6).
///
/// Traps: it must not be sent before the responses of every task the function terminated
/// (or their termination is otherwise settled); it advances StatSN and carries
/// ExpCmdSN/MaxCmdSN. ABORT TASK for an unknown task is FUNCTION_COMPLETE, not
/// TASK_DOES_NOT_EXIST, when its RefCmdSN lies inside the command window. No data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    /// See [`super::tmf_response`]; 7..=254 are reserved.
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

impl TaskMgmtResponse {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::TaskMgmtResponse)?;
        bhs.expect_no_data()?;
        let response = bhs.u8_at(2);
        if response > tmf_response::AUTHORIZATION_FAILED && response != tmf_response::REJECTED {
            return Err(invalid("Response", u32::from(response)));
        }
        Ok(TaskMgmtResponse {
            response,
            itt: bhs.itt(),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TaskMgmtResponse, false);
        b.set_u8(1, 0x80);
        b.set_u8(2, self.response);
        b.set_u32(16, self.itt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::super::consts::tmf;
    use super::*;

    #[test]
    fn abort_task_layout() {
        let req = TaskMgmtRequest {
            immediate: true,
            function: tmf::ABORT_TASK,
            lun: 0x0001_0000_0000_0000,
            itt: 0x20,
            ref_task_tag: 0x11,
            cmdsn: 100,
            exp_statsn: 50,
            ref_cmdsn: 98,
            exp_data_sn: 0,
        };
        let b = req.encode().0;
        assert_eq!(b[..8], [0x42, 0x81, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[20..24], [0, 0, 0, 0x11]);
        assert_eq!(b[32..36], [0, 0, 0, 98]);
        assert_eq!(TaskMgmtRequest::decode(&Bhs(b)), Ok(req));
    }

    #[test]
    fn unknown_function_decodes_for_a_not_supported_answer() {
        let mut b = TaskMgmtRequest::default().encode().0;
        b[1] = 0x80 | 0x7e;
        assert_eq!(
            TaskMgmtRequest::decode(&Bhs(b)).map(|r| r.function),
            Ok(0x7e)
        );
        b[7] = 1;
        assert!(
            TaskMgmtRequest::decode(&Bhs(b)).is_err(),
            "no data segment allowed"
        );
    }

    #[test]
    fn tmf_response_codes() {
        for (code, ok) in [
            (0u8, true),
            (6, true),
            (7, false),
            (254, false),
            (255, true),
        ] {
            let b = TaskMgmtResponse {
                response: code,
                ..Default::default()
            }
            .encode();
            assert_eq!(b.0[..3], [0x22, 0x80, code]);
            assert_eq!(TaskMgmtResponse::decode(&b).is_ok(), ok, "response {code}");
        }
    }
}
