//! Deterministic, seeded mutation fuzzer for the iSCSI PDU codec, runnable on the stable
//! toolchain with no extra crates.
//!
//! It starts from valid encodings of every PDU type, valid AHS areas and sense segments, and
//! random bytes; mutates them (bit flips, byte sets, opcode swaps, truncation, extension,
//! splices); and feeds the result to `Request::decode`, `Response::decode`, every PDU type's
//! own `decode`, `parse_ahs`, `parse_sense_segment` and the digests. It asserts that nothing
//! panics and that every successful decode re-encodes to a header that decodes to the same
//! value. `RINGSAN_FUZZ_ITERS` (default 200000) and `RINGSAN_FUZZ_SEED` (decimal or 0x-hex)
//! override the run; a failure prints the seed, iteration and input to replay it.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ringsan::iscsi::digest;
use ringsan::iscsi::pdu::*;

const DEFAULT_ITERS: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x5eed_15c5_1a2b_3c4d;

/// splitmix64: tiny, deterministic and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
}

// ---------------------------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------------------------

fn requests(rng: &mut Rng) -> Vec<Request> {
    let mut cdb = [0u8; 16];
    cdb.iter_mut().for_each(|b| *b = rng.byte());
    vec![
        Request::ScsiCommand(ScsiCommand {
            immediate: false,
            final_flag: true,
            read: true,
            write: false,
            attr: task_attr::SIMPLE,
            ahs_len_words: 0,
            data_len: 0,
            lun: encode_lun(1),
            itt: 0x10,
            expected_data_len: 4096,
            cmdsn: 5,
            exp_statsn: 6,
            cdb,
        }),
        Request::ScsiCommand(ScsiCommand {
            immediate: true,
            final_flag: false,
            read: true,
            write: true,
            attr: task_attr::ACA,
            ahs_len_words: 7,
            data_len: 512,
            cdb,
            ..Default::default()
        }),
        Request::DataOut(DataOut {
            final_flag: true,
            data_len: 8192,
            itt: 3,
            ttt: 9,
            ..Default::default()
        }),
        Request::NopOut(NopOut {
            immediate: true,
            itt: RESERVED_TAG,
            ttt: 77,
            ..Default::default()
        }),
        Request::TaskMgmt(TaskMgmtRequest {
            function: tmf::ABORT_TASK,
            ref_task_tag: 4,
            ..Default::default()
        }),
        Request::Login(LoginRequest {
            transit: true,
            csg: login_stage::OPERATIONAL,
            nsg: login_stage::FULL_FEATURE,
            data_len: 0x1c4,
            isid: [0x00, 0x02, 0x3d, 0, 0, 1],
            cmdsn: 1,
            ..Default::default()
        }),
        Request::Text(TextRequest {
            final_flag: true,
            data_len: 16,
            ttt: RESERVED_TAG,
            ..Default::default()
        }),
        Request::Logout(LogoutRequest {
            immediate: true,
            reason: logout_reason::CLOSE_SESSION,
            ..Default::default()
        }),
        Request::Snack(Snack {
            snack_type: snack_type::STATUS,
            beg_run: 3,
            run_length: 2,
            ..Default::default()
        }),
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::ScsiResponse(ScsiResponse {
            underflow: true,
            status: 2,
            data_len: 20,
            residual_count: 512,
            ..Default::default()
        }),
        Response::DataIn(DataIn {
            final_flag: true,
            status_present: true,
            data_len: 4096,
            ..Default::default()
        }),
        Response::DataIn(DataIn {
            ack: true,
            data_len: 1,
            data_sn: 7,
            ..Default::default()
        }),
        Response::R2t(R2t {
            ttt: 1,
            desired_len: 65536,
            ..Default::default()
        }),
        Response::NopIn(NopIn {
            itt: RESERVED_TAG,
            ttt: 5,
            ..Default::default()
        }),
        Response::TaskMgmt(TaskMgmtResponse {
            response: tmf_response::TASK_DOES_NOT_EXIST,
            ..Default::default()
        }),
        Response::Login(LoginResponse {
            transit: true,
            nsg: login_stage::FULL_FEATURE,
            csg: 1,
            status_class: 2,
            ..Default::default()
        }),
        Response::Text(TextResponse {
            cont: true,
            ttt: 3,
            data_len: 9000,
            ..Default::default()
        }),
        Response::Logout(LogoutResponse {
            time2wait: 2,
            time2retain: 20,
            ..Default::default()
        }),
        Response::Reject(Reject {
            reason: reject_reason::PROTOCOL_ERROR,
            data_len: 48,
            ..Default::default()
        }),
        Response::Async(AsyncMessage {
            async_event: async_event::SESSION_DROP,
            parameter2: 2,
            ..Default::default()
        }),
    ]
}

fn seed_corpus(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    corpus.extend(requests(rng).iter().map(|r| r.encode().0.to_vec()));
    corpus.extend(responses().iter().map(|r| r.encode().0.to_vec()));
    // A SCSI Command followed by its AHS area, so the AHS behind a header gets exercised.
    let tail: Vec<u8> = (0..8).collect();
    let mut ahs = Vec::new();
    encode_ahs(
        &AhsInfo {
            extended_cdb: &tail,
            bidi_read_len: Some(4096),
        },
        &mut ahs,
    );
    let cmd = ScsiCommand {
        ahs_len_words: (ahs.len() / 4) as u8,
        ..Default::default()
    };
    corpus.push([cmd.encode().0.as_slice(), &ahs].concat());
    corpus.push(ahs);
    let mut sense = Vec::new();
    sense_segment(
        &[
            0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
        ],
        &mut sense,
    );
    corpus.push(sense);
    for len in [0usize, 1, 2, 3, 4, 8, 47, 48, 49, 64, 100] {
        let random = rng.bytes(len);
        corpus.push(random);
    }
    corpus
}

// ---------------------------------------------------------------------------------------------
// Mutation
// ---------------------------------------------------------------------------------------------

const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x7f, 0x80, 0xc0, 0xfe, 0xff];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        match rng.below(9) {
            0 | 1 => flip_bit(rng, input),
            2 => set_byte(rng, input),
            3 => set_opcode(rng, input),
            4 => truncate(rng, input),
            5 => extend(rng, input),
            6 => splice(rng, corpus, input),
            7 => set_word(rng, input),
            _ => set_flags(rng, input),
        }
    }
}

fn flip_bit(rng: &mut Rng, input: &mut [u8]) {
    if !input.is_empty() {
        let at = rng.below(input.len());
        input[at] ^= 1 << rng.below(8);
    }
}

fn set_byte(rng: &mut Rng, input: &mut [u8]) {
    if !input.is_empty() {
        let at = rng.below(input.len());
        input[at] = if rng.chance(2) {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.byte()
        };
    }
}

/// Puts a defined opcode (sometimes with the I or reserved bit) in byte 0.
fn set_opcode(rng: &mut Rng, input: &mut [u8]) {
    if let Some(first) = input.first_mut() {
        let op = Opcode::ALL[rng.below(Opcode::ALL.len())] as u8;
        *first = op | (rng.byte() & 0xc0);
    }
}

/// Byte 1 holds the flags of most PDUs.
fn set_flags(rng: &mut Rng, input: &mut [u8]) {
    if let Some(flags) = input.get_mut(1) {
        *flags = rng.byte();
    }
}

/// Overwrites an aligned 32-bit field (lengths, tags, sequence numbers).
fn set_word(rng: &mut Rng, input: &mut [u8]) {
    if input.len() >= 4 {
        let at = rng.below(input.len() / 4) * 4;
        let value = match rng.below(4) {
            0 => 0u32,
            1 => u32::MAX,
            2 => rng.below(64) as u32,
            _ => rng.next_u64() as u32,
        };
        input[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
}

fn truncate(rng: &mut Rng, input: &mut Vec<u8>) {
    let keep = rng.below(input.len() + 1);
    input.truncate(keep);
}

fn extend(rng: &mut Rng, input: &mut Vec<u8>) {
    let more = rng.below(64);
    let tail = rng.bytes(more);
    input.extend_from_slice(&tail);
}

/// Copies a random chunk of another corpus entry over a random place of the input.
fn splice(rng: &mut Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    let donor = &corpus[rng.below(corpus.len())];
    if donor.is_empty() {
        return;
    }
    let from = rng.below(donor.len());
    let len = 1 + rng.below(donor.len() - from);
    let at = rng.below(input.len() + 1);
    let end = (at + len).min(input.len());
    input.splice(at..end, donor[from..from + len].iter().copied());
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Which decoders accepted an input, for the coverage check at the end.
#[derive(Default)]
struct Coverage {
    request_opcodes: BTreeSet<u8>,
    response_opcodes: BTreeSet<u8>,
    ahs_ok: u64,
    sense_ok: u64,
}

/// A decoded value must survive encode -> decode, and encoding must be stable.
fn assert_round_trip<T, E>(
    value: &T,
    encode: impl Fn(&T) -> Bhs,
    decode: impl Fn(&Bhs) -> Result<T, E>,
) where
    T: PartialEq + Debug,
    E: Debug,
{
    let bhs = encode(value);
    match decode(&bhs) {
        Ok(again) => {
            assert_eq!(
                &again, value,
                "re-decoded value differs; re-encoded {bhs:?}"
            );
            assert_eq!(encode(&again), bhs, "encoding is not stable");
        }
        Err(e) => panic!("{value:?} re-encoded to {bhs:?}, which fails to decode: {e:?}"),
    }
}

macro_rules! check_pdu_types {
    ($bhs:expr, $($ty:ident),+ $(,)?) => {
        $(
            if let Ok(value) = $ty::decode($bhs) {
                assert_eq!($bhs.opcode_raw(), value.encode().opcode_raw(), stringify!($ty));
                assert_round_trip(&value, $ty::encode, $ty::decode);
            }
        )+
    };
}

fn check_header(bhs: &Bhs, coverage: &mut Coverage) {
    let _ = (
        bhs.immediate(),
        bhs.final_flag(),
        bhs.lun_raw(),
        bhs.itt(),
        format!("{bhs:?}"),
    );
    assert!(bhs.data_segment_len() < 1 << 24);
    assert!(bhs.total_ahs_len_bytes() <= 255 * 4);
    let request = Request::decode(bhs);
    let response = Response::decode(bhs);
    assert!(
        request.is_err() || response.is_err(),
        "both directions accepted {bhs:?}"
    );
    if let Ok(req) = request {
        assert_round_trip(&req, Request::encode, Request::decode);
        coverage.request_opcodes.insert(req.opcode() as u8);
    }
    if let Ok(rsp) = response {
        assert_round_trip(&rsp, Response::encode, Response::decode);
        coverage.response_opcodes.insert(rsp.opcode() as u8);
    }
    check_pdu_types!(
        bhs,
        ScsiCommand,
        DataOut,
        NopOut,
        TaskMgmtRequest,
        LoginRequest,
        TextRequest,
        LogoutRequest,
        Snack,
        ScsiResponse,
        DataIn,
        R2t,
        NopIn,
        TaskMgmtResponse,
        LoginResponse,
        TextResponse,
        LogoutResponse,
        Reject,
        AsyncMessage,
    );
    let _ = decode_lun(bhs.lun_raw());
}

fn check_ahs(buf: &[u8], coverage: &mut Coverage) {
    if let Ok(info) = parse_ahs(buf) {
        if info != AhsInfo::default() {
            coverage.ahs_ok += 1;
        }
        let mut again = Vec::new();
        encode_ahs(&info, &mut again);
        assert_eq!(again.len() % 4, 0);
        assert_eq!(parse_ahs(&again), Ok(info));
    }
}

fn check_sense(buf: &[u8], coverage: &mut Coverage) {
    if let Ok(sense) = parse_sense_segment(buf) {
        if !sense.is_empty() {
            coverage.sense_ok += 1;
        }
        assert!(sense.len() <= buf.len());
        let mut again = Vec::new();
        sense_segment(sense, &mut again);
        assert_eq!(parse_sense_segment(&again), Ok(sense));
    }
}

/// Every property on one input.
fn check_input(buf: &[u8], coverage: &mut Coverage) {
    check_ahs(buf, coverage);
    check_sense(buf, coverage);
    let _ = (digest::data_digest(buf), digest::crc32c(buf));
    match Bhs::from_slice(buf) {
        Err(_) => assert!(buf.len() < BHS_LEN),
        Ok(bhs) => {
            let rest = &buf[BHS_LEN..];
            let ahs = rest.get(..bhs.total_ahs_len_bytes()).unwrap_or(rest);
            let _ = digest::header_digest(&bhs, ahs);
            check_ahs(ahs, coverage);
            check_header(&bhs, coverage);
        }
    }
}

fn hex(buf: &[u8]) -> String {
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs every property on `input`; on a panic, fails with what it takes to replay it.
fn check_or_report(input: &[u8], coverage: &mut Coverage, whence: impl Fn() -> String) {
    let outcome = catch_unwind(AssertUnwindSafe(|| check_input(input, coverage)));
    if outcome.is_err() {
        panic!(
            "codec panicked or broke a property at {}: input ({} bytes) {}",
            whence(),
            input.len(),
            hex(input)
        );
    }
}

#[test]
fn fuzz_pdu_codec() {
    let iters = env_u64("RINGSAN_FUZZ_ITERS", DEFAULT_ITERS);
    let seed = env_u64("RINGSAN_FUZZ_SEED", DEFAULT_SEED);
    println!("fuzz_pdu: seed {seed:#x}, {iters} iterations");
    let mut rng = Rng(seed);
    let corpus = seed_corpus(&mut rng);
    let mut coverage = Coverage::default();

    for (index, entry) in corpus.iter().enumerate() {
        check_or_report(entry, &mut coverage, || {
            format!("seed {seed:#x}, corpus entry {index}")
        });
    }
    for iteration in 0..iters {
        let mut input = if rng.chance(16) {
            let len = rng.below(128);
            rng.bytes(len)
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        mutate(&mut rng, &corpus, &mut input);
        check_or_report(&input, &mut coverage, || {
            format!("seed {seed:#x}, iteration {iteration}")
        });
    }

    println!(
        "fuzz_pdu: requests {:?}, responses {:?}, ahs ok {}, sense ok {}",
        coverage.request_opcodes, coverage.response_opcodes, coverage.ahs_ok, coverage.sense_ok
    );
    if iters >= 20_000 {
        assert_eq!(
            coverage.request_opcodes.len(),
            8,
            "every request type decoded at least once"
        );
        assert_eq!(
            coverage.response_opcodes.len(),
            10,
            "every response type decoded at least once"
        );
        assert!(coverage.ahs_ok > 0 && coverage.sense_ok > 0);
    }
}

/// The harness itself must notice a broken property: a decoder that disagrees with itself.
#[test]
#[should_panic(expected = "re-decoded value differs")]
fn round_trip_check_catches_a_lossy_codec() {
    let lossy_decode = |bhs: &Bhs| -> Result<u32, PduError> { Ok(bhs.itt() & 0xff) };
    let encode = |itt: &u32| {
        let mut b = NopOut {
            itt: *itt,
            ..Default::default()
        }
        .encode();
        b.0[16] = 0; // drops the top byte of the tag
        b
    };
    assert_round_trip(&0x0100_0001u32, encode, lossy_decode);
}
