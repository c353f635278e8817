//! A small blocking iSCSI initiator on ringsan's own PDU codec, for tests that need to send what
//! no well-behaved initiator sends (hostile input) or look at single PDUs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringsan::iscsi::digest;
use ringsan::iscsi::pdu::{
    encode_lun, pad_len, parse_sense_segment, Bhs, DataOut, LoginRequest, LogoutRequest, NopOut,
    Opcode, Response, ScsiCommand, TaskMgmtRequest, BHS_LEN,
};

/// Options of a login.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    pub initiator: String,
    pub target: String,
    pub isid: [u8; 6],
    pub header_digest: bool,
    pub data_digest: bool,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub extra: Vec<(String, String)>,
}

impl LoginOptions {
    pub fn new(target: &str) -> LoginOptions {
        LoginOptions {
            initiator: "iqn.2026-11.io.ringsan:test-initiator".into(),
            target: target.into(),
            isid: [0x80, 0, 0, 0, 0, 1],
            header_digest: false,
            data_digest: false,
            immediate_data: true,
            initial_r2t: false,
            extra: Vec::new(),
        }
    }
}

/// The result of one SCSI command.
#[derive(Debug, Default)]
pub struct ScsiResult {
    pub status: u8,
    pub sense: Vec<u8>,
    pub data: Vec<u8>,
    pub residual: u32,
    pub underflow: bool,
    pub overflow: bool,
}

impl ScsiResult {
    /// (sense key, ASC, ASCQ) of fixed-format sense data.
    pub fn sense_key(&self) -> (u8, u8, u8) {
        if self.sense.len() < 14 {
            return (0, 0, 0);
        }
        if self.sense[0] & 0x7f >= 0x72 {
            return (self.sense[1] & 0xf, self.sense[2], self.sense[3]);
        }
        (self.sense[2] & 0xf, self.sense[12], self.sense[13])
    }
}

/// One connection.
pub struct Conn {
    pub stream: TcpStream,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub itt: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_recv: usize,
    pub tsih: u16,
    pub async_messages: Vec<u8>,
    /// Negotiated: the initiator may send immediate data.
    pub immediate_data: bool,
    /// Negotiated: unsolicited Data-Out is not allowed.
    pub initial_r2t: bool,
    /// Negotiated FirstBurstLength.
    pub first_burst: usize,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            cmdsn: 1,
            exp_statsn: 0,
            itt: 1,
            header_digest: false,
            data_digest: false,
            max_recv: 8192,
            tsih: 0,
            async_messages: Vec::new(),
            immediate_data: true,
            initial_r2t: true,
            first_burst: 65536,
        }
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    /// Sends a header (with digest when negotiated) and a data segment (padding, digest).
    pub fn send(&mut self, bhs: &Bhs, data: &[u8]) -> std::io::Result<()> {
        let mut out = bhs.0.to_vec();
        if self.header_digest {
            out.extend_from_slice(&digest::digest_to_wire(digest::header_digest(bhs, &[])));
        }
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, pad_len(data.len())));
        if self.data_digest && !data.is_empty() {
            let mut padded = data.to_vec();
            padded.extend(std::iter::repeat_n(0u8, pad_len(data.len())));
            out.extend_from_slice(&digest::digest_to_wire(digest::crc32c(&padded)));
        }
        self.stream.write_all(&out)
    }

    /// Reads one PDU.
    pub fn recv(&mut self) -> std::io::Result<(Bhs, Vec<u8>)> {
        let mut h = [0u8; BHS_LEN];
        self.stream.read_exact(&mut h)?;
        let bhs = Bhs(h);
        if self.header_digest {
            let mut d = [0u8; 4];
            self.stream.read_exact(&mut d)?;
        }
        let len = bhs.data_segment_len();
        let mut data = vec![0u8; len + pad_len(len)];
        self.stream.read_exact(&mut data)?;
        if self.data_digest && len > 0 {
            let mut d = [0u8; 4];
            self.stream.read_exact(&mut d)?;
        }
        data.truncate(len);
        Ok((bhs, data))
    }

    /// Reads PDUs until one that is not an Async Message or a NOP-In ping.
    pub fn recv_response(&mut self) -> std::io::Result<(Response, Vec<u8>)> {
        loop {
            let (bhs, data) = self.recv()?;
            let r = Response::decode(&bhs).map_err(|e| std::io::Error::other(e.to_string()))?;
            match &r {
                Response::Async(a) => {
                    self.async_messages.push(a.async_event);
                    continue;
                }
                Response::NopIn(n) if n.itt == 0xffff_ffff => continue,
                _ => return Ok((r, data)),
            }
        }
    }

    /// Logs in (straight to operational negotiation, no authentication).
    pub fn login(&mut self, o: &LoginOptions) -> Result<(), String> {
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let mut keys = vec![
            ("InitiatorName".to_string(), o.initiator.clone()),
            ("SessionType".into(), "Normal".into()),
            ("TargetName".into(), o.target.clone()),
            (
                "HeaderDigest".into(),
                if o.header_digest {
                    "CRC32C".into()
                } else {
                    "None".into()
                },
            ),
            (
                "DataDigest".into(),
                if o.data_digest {
                    "CRC32C".into()
                } else {
                    "None".into()
                },
            ),
            ("ImmediateData".into(), yn(o.immediate_data).into()),
            ("InitialR2T".into(), yn(o.initial_r2t).into()),
            ("MaxRecvDataSegmentLength".into(), "65536".into()),
            ("MaxBurstLength".into(), "262144".into()),
            ("FirstBurstLength".into(), "65536".into()),
        ];
        keys.extend(o.extra.iter().cloned());
        // The target accepts what we offer for these (AND/OR rules with its permissive limits).
        self.immediate_data = o.immediate_data;
        self.initial_r2t = o.initial_r2t;
        self.first_burst = 65536;
        self.login_keys(o.isid, &keys, o.header_digest, o.data_digest)
    }

    /// Logs in with exactly these keys; returns the status on failure.
    pub fn login_keys(
        &mut self,
        isid: [u8; 6],
        keys: &[(String, String)],
        hd: bool,
        dd: bool,
    ) -> Result<(), String> {
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}").as_bytes());
            text.push(0);
        }
        for _round in 0..4 {
            let req = LoginRequest {
                transit: true,
                cont: false,
                csg: 1,
                nsg: 3,
                version_max: 0,
                version_min: 0,
                data_len: text.len() as u32,
                isid,
                tsih: 0,
                itt: self.itt,
                cid: 1,
                cmdsn: self.cmdsn,
                exp_statsn: self.exp_statsn,
            };
            self.send(&req.encode(), &text).map_err(|e| e.to_string())?;
            let (bhs, _data) = self.recv().map_err(|e| e.to_string())?;
            let resp = match Response::decode(&bhs) {
                Ok(Response::Login(r)) => r,
                other => return Err(format!("unexpected login answer {other:?}")),
            };
            if resp.status_class != 0 {
                return Err(format!(
                    "login status {:02x}{:02x}",
                    resp.status_class, resp.status_detail
                ));
            }
            self.exp_statsn = resp.statsn.wrapping_add(1);
            if resp.transit && resp.nsg == 3 {
                self.tsih = resp.tsih;
                self.header_digest = hd;
                self.data_digest = dd;
                return Ok(());
            }
            text.clear();
        }
        Err("login did not reach full-feature phase".into())
    }

    /// Sends a SCSI Command PDU (non-immediate, simple attribute) with `immediate` as its data
    /// segment and advances CmdSN; returns its ITT. The caller reads what follows.
    pub fn send_command(
        &mut self,
        lun: u16,
        cdb: &[u8],
        write: bool,
        expected_len: u32,
        immediate: &[u8],
    ) -> std::io::Result<u32> {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: !write && expected_len > 0,
            write,
            attr: 1,
            ahs_len_words: 0,
            data_len: immediate.len() as u32,
            lun: encode_lun(lun),
            itt,
            expected_data_len: expected_len,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
            cdb: c,
        };
        self.cmdsn = self.cmdsn.wrapping_add(1);
        self.send(&cmd.encode(), immediate)?;
        Ok(itt)
    }

    /// Sends one SCSI command and collects its data and status.
    pub fn scsi(
        &mut self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        read_len: u32,
    ) -> std::io::Result<ScsiResult> {
        let immediate = if self.immediate_data {
            data_out.len().min(self.first_burst).min(8192)
        } else {
            0
        };
        let expected = if data_out.is_empty() {
            read_len
        } else {
            data_out.len() as u32
        };
        let itt = self.send_command(
            lun,
            cdb,
            !data_out.is_empty(),
            expected,
            &data_out[..immediate],
        )?;
        if !self.initial_r2t {
            // Unsolicited Data-Out up to FirstBurstLength (RFC 7143 §11.7.1).
            let end = data_out.len().min(self.first_burst);
            let (mut off, mut sn) = (immediate, 0);
            while off < end {
                let n = (end - off).min(8192);
                let d = DataOut {
                    final_flag: off + n == end,
                    data_len: n as u32,
                    lun: encode_lun(lun),
                    itt,
                    ttt: 0xffff_ffff,
                    exp_statsn: self.exp_statsn,
                    data_sn: sn,
                    buffer_offset: off as u32,
                };
                self.send(&d.encode(), &data_out[off..off + n])?;
                sn += 1;
                off += n;
            }
        }
        let mut result = ScsiResult::default();
        loop {
            let (r, data) = self.recv_response()?;
            match r {
                Response::R2t(r2t) => {
                    let mut off = r2t.buffer_offset as usize;
                    let end = off + r2t.desired_len as usize;
                    let mut sn = 0;
                    while off < end {
                        let n = (end - off).min(8192);
                        let d = DataOut {
                            final_flag: off + n == end,
                            data_len: n as u32,
                            lun: encode_lun(lun),
                            itt,
                            ttt: r2t.ttt,
                            exp_statsn: self.exp_statsn,
                            data_sn: sn,
                            buffer_offset: off as u32,
                        };
                        self.send(&d.encode(), &data_out[off..off + n])?;
                        sn += 1;
                        off += n;
                    }
                }
                Response::DataIn(d) => {
                    result.data.extend_from_slice(&data);
                    if d.status_present {
                        self.exp_statsn = d.statsn.wrapping_add(1);
                        result.status = d.status;
                        result.residual = d.residual_count;
                        result.underflow = d.underflow;
                        result.overflow = d.overflow;
                        return Ok(result);
                    }
                }
                Response::ScsiResponse(s) => {
                    self.exp_statsn = s.statsn.wrapping_add(1);
                    result.status = s.status;
                    result.residual = s.residual_count;
                    result.underflow = s.underflow;
                    result.overflow = s.overflow;
                    result.sense = parse_sense_segment(&data)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    return Ok(result);
                }
                other => return Err(std::io::Error::other(format!("unexpected {other:?}"))),
            }
        }
    }

    /// A NOP-Out ping; returns the echoed data.
    pub fn ping(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let itt = self.next_itt();
        let n = NopOut {
            immediate: true,
            data_len: data.len() as u32,
            lun: 0,
            itt,
            ttt: 0xffff_ffff,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
        };
        self.send(&n.encode(), data)?;
        match self.recv_response()? {
            (Response::NopIn(r), d) if r.itt == itt => Ok(d),
            other => Err(std::io::Error::other(format!("unexpected {:?}", other.0))),
        }
    }

    /// A task management request; returns the response code.
    pub fn tmf(&mut self, function: u8, lun: u16, rtt: u32) -> std::io::Result<u8> {
        let itt = self.next_itt();
        let t = TaskMgmtRequest {
            immediate: true,
            function,
            lun: encode_lun(lun),
            itt,
            ref_task_tag: rtt,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
            ref_cmdsn: 0,
            exp_data_sn: 0,
        };
        self.send(&t.encode(), &[])?;
        loop {
            match self.recv_response()? {
                (Response::TaskMgmt(r), _) if r.itt == itt => return Ok(r.response),
                _ => continue,
            }
        }
    }

    /// Logs out (close session); returns the response code.
    pub fn logout(&mut self) -> std::io::Result<u8> {
        let itt = self.next_itt();
        let l = LogoutRequest {
            immediate: true,
            reason: 0,
            data_len: 0,
            itt,
            cid: 1,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
        };
        self.send(&l.encode(), &[])?;
        match self.recv_response()? {
            (Response::Logout(r), _) => Ok(r.response),
            other => Err(std::io::Error::other(format!("unexpected {:?}", other.0))),
        }
    }

    /// Whether the target has closed the connection (reads EOF or an error within `wait`).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {
                    if std::time::Instant::now() > deadline {
                        return false;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Opcode helper for assertions.
    pub fn opcode(bhs: &Bhs) -> Option<Opcode> {
        bhs.opcode().ok()
    }
}

/// READ(10) CDB.
pub fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// WRITE(10) CDB.
pub fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ(16) CDB.
pub fn read16(lba: u64, blocks: u32) -> Vec<u8> {
    let mut c = vec![0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}
