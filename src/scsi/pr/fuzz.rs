//! Seeded mutation fuzzing of the persistent reservation code (SPC-4 §5.9, §6.15, §6.16): no
//! CDB, parameter list or TransportID from the wire may panic, every accepted command keeps the
//! [`PrState`] invariants, and applying is deterministic (the cluster applies the same log on
//! every node and must reach the same state).

use super::access::check_access;
use super::apply::apply;
use super::out::{decode_prout, PrOut};
use super::prin::{persistent_reserve_in, read_full_status, read_keys};
use super::state::testutil::nx;
use super::state::PrState;
use super::transport_id::TransportId;
use super::types::{PrType, ServiceAction};
use crate::scsi::nexus::Nexus;
use crate::scsi::pr_store::PrStore;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// A small pool of I_T nexuses: 3 initiators, 2 ports each, 2 target ports.
fn pool() -> Vec<Nexus> {
    let mut v = Vec::new();
    for i in 1..=3 {
        for port in 0..2 {
            for t in 1..=2 {
                v.push(nx(i, port, t));
            }
        }
    }
    v
}

fn tid_for(rng: &mut Rng, nexuses: &[Nexus]) -> TransportId {
    let n = &nexuses[rng.below(nexuses.len())];
    let t = TransportId::from_initiator_port(&n.initiator_port)
        .unwrap_or_else(|| TransportId::device("iqn.fallback:x"));
    if rng.chance(3) {
        TransportId::device(&t.name)
    } else {
        t
    }
}

/// A plausible command from `n` in `state`: keys mostly right, so every service action gets
/// past the key checks; few distinct keys, so they collide.
fn random_op(rng: &mut Rng, nexuses: &[Nexus], state: &PrState, n: &Nexus) -> PrOut {
    let action = rng_action(rng);
    random_op_of(rng, nexuses, state, n, action)
}

fn rng_action(rng: &mut Rng) -> usize {
    rng.below(9)
}

fn random_op_of(
    rng: &mut Rng,
    nexuses: &[Nexus],
    state: &PrState,
    n: &Nexus,
    action: usize,
) -> PrOut {
    let own = state.registration_of(n).map(|r| r.key);
    let key = |rng: &mut Rng| match own {
        Some(k) if !rng.chance(8) => k,
        _ => rng.below(4) as u64,
    };
    let other = |rng: &mut Rng| {
        if !state.registrations.is_empty() && !rng.chance(5) {
            state.registrations[rng.below(state.registrations.len())].key
        } else {
            rng.below(4) as u64
        }
    };
    let t = match &state.reservation {
        Some(r) if rng.chance(2) => r.pr_type,
        _ => PrType::ALL[rng.below(6)],
    };
    let mut op = match action {
        0 => PrOut::register(key(rng), 1 + rng.below(4) as u64),
        1 => PrOut::register(key(rng), rng.below(3) as u64),
        2 => PrOut::register_ignore(rng.below(5) as u64),
        3 => PrOut::reserve(key(rng), t),
        4 => PrOut::release(key(rng), t),
        5 => PrOut::clear(key(rng)),
        6 => {
            let sa = if rng.chance(6) { 0 } else { other(rng) };
            PrOut::preempt(key(rng), sa, t, rng.chance(2))
        }
        7 => {
            let dest = tid_for(rng, nexuses);
            let rtpi = 1 + rng.below(3) as u16;
            let sa = if rng.chance(8) {
                0
            } else {
                1 + rng.below(3) as u64
            };
            PrOut::register_and_move(key(rng), sa, dest, rtpi, rng.chance(2))
        }
        _ => {
            let mut op = PrOut::register(0, 1 + rng.below(3) as u64);
            op.spec_i_pt = true;
            for _ in 0..rng.below(3) {
                op.transport_ids.push(tid_for(rng, nexuses));
            }
            op
        }
    };
    if matches!(
        op.action,
        ServiceAction::Register | ServiceAction::RegisterAndIgnoreExistingKey
    ) {
        op.all_tg_pt = rng.chance(4);
        op.aptpl = rng.chance(4);
    }
    op
}

/// Any combination of fields, including ones decoding never produces (a RESERVE without a type,
/// REGISTER AND MOVE without a TransportID, SPEC_I_PT on CLEAR).
fn arbitrary_op(rng: &mut Rng, nexuses: &[Nexus]) -> PrOut {
    let action = ServiceAction::from_code(rng.below(8) as u8).unwrap_or(ServiceAction::Register);
    let mut op = PrOut::new(action, rng.below(4) as u64, rng.below(4) as u64);
    if rng.chance(4) {
        op.key = rng.next();
        op.sa_key = rng.next();
    }
    op.pr_type = if rng.chance(5) {
        None
    } else {
        Some(PrType::ALL[rng.below(6)])
    };
    op.spec_i_pt = rng.chance(3);
    op.all_tg_pt = rng.chance(3);
    op.aptpl = rng.chance(3);
    op.unreg = rng.chance(2);
    op.relative_port = rng.below(4) as u16;
    for _ in 0..rng.below(4) {
        op.transport_ids.push(tid_for(rng, nexuses));
    }
    op
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.byte();
            }
            2 => data.truncate(rng.below(data.len() + 1)),
            3 => {
                for _ in 0..rng.below(40) {
                    data.push(rng.byte());
                }
            }
            4 if !data.is_empty() => {
                // Interesting values in length fields.
                let i = rng.below(data.len());
                data[i] = [0x00, 0x01, 0x04, 0x14, 0x18, 0x7F, 0x80, 0xFF][rng.below(8)];
            }
            _ => {}
        }
    }
}

/// Everything read-only that a state supports must work on it.
fn exercise(state: &PrState, nexuses: &[Nexus], rng: &mut Rng) {
    assert_eq!(state.check_invariants(), Ok(()));
    for sa in 0..4u8 {
        let alloc = [0u16, 8, 30, 0xFFFF][rng.below(4)];
        let mut cdb = [0x5E, sa, 0, 0, 0, 0, 0, 0, 0, 0];
        cdb[7..9].copy_from_slice(&alloc.to_be_bytes());
        let d = persistent_reserve_in(state, &cdb, false).unwrap();
        assert!(d.len() <= usize::from(alloc));
        if alloc == 0xFFFF && sa != 2 {
            let additional = u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as usize;
            assert_eq!(d.len(), 8 + additional);
        }
    }
    // READ KEYS and READ FULL STATUS describe the registrations, in order.
    let keys = read_keys(state);
    let full = read_full_status(state);
    let mut at = 8;
    for (i, r) in state.registrations.iter().enumerate() {
        assert_eq!(keys[8 + 8 * i..16 + 8 * i], r.key.to_be_bytes());
        let d = &full[at..];
        assert_eq!(d[..8], r.key.to_be_bytes());
        assert_eq!(d[12] & 1 != 0, state.registration_holds(i));
        assert_eq!(d[12] & 2 != 0, r.all_tg_pt);
        let len = u32::from_be_bytes([d[20], d[21], d[22], d[23]]) as usize;
        let (tid, used) = TransportId::decode(&d[24..24 + len]).unwrap();
        assert_eq!(used, len);
        assert_eq!(tid.initiator_port(), r.initiator_port);
        at += 24 + len;
    }
    assert_eq!(at, full.len());
    let mut cdb = vec![0u8; 1 + rng.below(16)];
    for b in cdb.iter_mut() {
        *b = rng.byte();
    }
    for n in nexuses {
        let _ = check_access(state, n, &cdb);
    }
}

#[test]
fn random_sequences_keep_invariants_and_are_deterministic() {
    let nexuses = pool();
    let mut rng = Rng(0x5EED_0001);
    let mut succeeded = [0usize; 8];
    let dir = std::env::temp_dir().join(format!("ringsan-pr-fuzz-{}", std::process::id()));
    let store = PrStore::new(&dir, &[0x5e; 16]);
    let mut persisted = 0usize;
    for _ in 0..200 {
        let mut s = PrState::new();
        for _ in 0..60 {
            // Holders get picked often, and often try REGISTER AND MOVE.
            let holders: Vec<&Nexus> = nexuses.iter().filter(|x| s.is_holder(x)).collect();
            let (n, op) = if !holders.is_empty() && rng.chance(3) {
                let n = holders[rng.below(holders.len())];
                let action = if rng.chance(2) {
                    7
                } else {
                    rng_action(&mut rng)
                };
                (n, random_op_of(&mut rng, &nexuses, &s, n, action))
            } else {
                let n = &nexuses[rng.below(nexuses.len())];
                (n, random_op(&mut rng, &nexuses, &s, n))
            };
            // What goes over the wire decodes to the same command.
            let (cdb, params) = op.encode();
            assert_eq!(decode_prout(&cdb, &params).as_ref(), Ok(&op));
            let first = apply(&s, n, &op);
            assert_eq!(first, apply(&s, n, &op), "deterministic");
            if let Ok((next, fx)) = first {
                succeeded[usize::from(op.action.code())] += 1;
                assert_eq!(next.log_index, s.log_index + 1);
                assert!(fx.unit_attentions_for(n).is_empty(), "never the origin");
                assert_eq!(
                    next.generation,
                    s.generation
                        .wrapping_add(u32::from(changes_generation(&s, n, &op))),
                    "PRgeneration after {op:?}"
                );
                // The APTPL file holds exactly this state.
                let text = toml::to_string(&next).expect("serializable");
                assert_eq!(toml::from_str::<PrState>(&text).as_ref(), Ok(&next));
                if fx.persist {
                    persisted += 1;
                    if persisted.is_multiple_of(97) {
                        store.save(&next).expect("write the state file");
                        assert_eq!(store.load().expect("read it back"), next.power_on());
                    }
                }
                s = next;
            }
            exercise(&s, &nexuses, &mut rng);
        }
    }
    // Every service action got through, often.
    assert!(succeeded.iter().all(|&c| c > 50), "{succeeded:?}");
    assert!(persisted > 97, "APTPL writes exercised: {persisted}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether PRgeneration must change (SPC-4 §6.15.2): REGISTER, REGISTER AND IGNORE EXISTING
/// KEY, CLEAR, PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE that complete, except the REGISTER
/// of an unregistered nexus with a zero SERVICE ACTION RESERVATION KEY, which does nothing;
/// never RESERVE or RELEASE.
fn changes_generation(before: &PrState, n: &Nexus, op: &PrOut) -> bool {
    match op.action {
        ServiceAction::Reserve | ServiceAction::Release => false,
        ServiceAction::Register | ServiceAction::RegisterAndIgnoreExistingKey => {
            before.is_registered(n) || op.sa_key != 0
        }
        _ => true,
    }
}

#[test]
fn arbitrary_commands_never_panic() {
    let nexuses = pool();
    let mut rng = Rng(0x5EED_0004);
    let mut s = PrState::new();
    for step in 0..20_000 {
        let n = &nexuses[rng.below(nexuses.len())];
        let op = if step % 2 == 0 {
            random_op(&mut rng, &nexuses, &s, n)
        } else {
            arbitrary_op(&mut rng, &nexuses)
        };
        if let Ok((next, _)) = apply(&s, n, &op) {
            s = next;
        }
        if rng.chance(100) {
            s = PrState::new();
        }
        if rng.chance(200) {
            exercise(&s, &nexuses, &mut rng);
        }
    }
}

#[test]
fn mutated_parameter_lists_never_panic() {
    let nexuses = pool();
    let mut rng = Rng(0x5EED_0002);
    let mut s = PrState::new();
    let mut accepted = 0;
    for _ in 0..30_000 {
        let n = &nexuses[rng.below(nexuses.len())];
        let op = random_op(&mut rng, &nexuses, &s, n);
        let (cdb, params) = op.encode();
        let mut cdb = cdb.to_vec();
        let mut params = params;
        if rng.chance(2) {
            mutate(&mut rng, &mut params);
        }
        if rng.chance(3) {
            mutate(&mut rng, &mut cdb);
        }
        if rng.chance(2) && cdb.len() >= 9 {
            // Keep the CDB's PARAMETER LIST LENGTH in step with the mutated list, mostly.
            let len = (params.len() as u32)
                .wrapping_add(rng.below(3) as u32)
                .wrapping_sub(1);
            cdb[5..9].copy_from_slice(&len.to_be_bytes());
        }
        let Ok(decoded) = decode_prout(&cdb, &params) else {
            continue;
        };
        if let Ok((next, _)) = apply(&s, n, &decoded) {
            accepted += 1;
            s = next;
            if rng.chance(50) {
                s = PrState::new();
            }
        }
        assert_eq!(s.check_invariants(), Ok(()));
    }
    assert!(accepted > 1000, "the fuzzer must reach apply: {accepted}");
    exercise(&s, &nexuses, &mut rng);
}

#[test]
fn random_bytes_never_panic() {
    let nexuses = pool();
    let mut rng = Rng(0x5EED_0003);
    let s = PrState::new();
    for _ in 0..20_000 {
        let mut cdb: Vec<u8> = (0..rng.below(17)).map(|_| rng.byte()).collect();
        if !cdb.is_empty() && rng.chance(2) {
            cdb[0] = 0x5F;
        }
        let params: Vec<u8> = (0..rng.below(120)).map(|_| rng.byte()).collect();
        if let Ok(op) = decode_prout(&cdb, &params) {
            let _ = apply(&s, &nexuses[0], &op);
        }
        let _ = TransportId::decode(&params);
        let _ = persistent_reserve_in(&s, &cdb, false);
        let _ = check_access(&s, &nexuses[1], &cdb);
        let _ = super::legacy::legacy_reserve(&s, &nexuses[1], &cdb);
        let _ = super::legacy::legacy_release(&s, &nexuses[1], &cdb);
    }
}
