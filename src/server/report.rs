//! What the server says about itself: STS (its counters, its leases',
//! its log's, its loop's) and DMP (the table, or its non-zero entries
//! when big).

use super::service::ServerCore;
use super::DUMP_MAX;
use crate::buffer::Buffer;
use crate::frontend::FrontInfo;
use crate::proto::{encode_field, put_list, Op};

impl ServerCore {
    pub(super) fn encode_stats(&self, out: &mut Buffer, front: &FrontInfo) {
        out.extend(b"OP=STS");
        encode_field(out, "ROLE", &"server");
        encode_field(out, "SIZE", &self.table.size());
        front.encode_conn_fields(out);
        for op in [Op::Get, Op::Put, Op::Clr, Op::Add, Op::Sts, Op::Dmp] {
            encode_field(out, op.name(), &self.counters.ops[op as usize]);
        }
        for (c, n) in &self.counters.errors {
            encode_field(out, &format!("ERR{c}"), n);
        }
        self.leases.encode_stats(out);
        encode_field(out, "DATA_ID", &format_args!("{:016x}", self.data_id));
        encode_field(out, "WRITE_SEQ", &self.write_seq());
        if let Some(store) = &self.store {
            store.encode_stats(out);
        }
        front.encode_loop_fields(out);
        out.extend(b";CODE=200");
    }

    /// The whole table when it is small; otherwise its non-zero entries.
    pub(super) fn encode_dump(&self, out: &mut Buffer) {
        let vals = self.table.values();
        let sparse = vals.len() > DUMP_MAX;
        // The listed entries: all of a small table, else the first
        // DUMP_MAX non-zero ones.
        let listed = || {
            vals.iter()
                .enumerate()
                .filter(move |(_, &v)| !sparse || v != 0)
                .take(DUMP_MAX)
                .map(|(i, &v)| (i as i64, v))
        };
        out.extend(b"OP=DMP");
        encode_field(out, "SIZE", &vals.len());
        if sparse {
            encode_field(out, "SPARSE", &1);
        }
        if listed().next().is_some() {
            out.extend(b";IND=");
            put_list(out, listed().map(|(i, _)| i));
            out.extend(b";DATA=");
            put_list(out, listed().map(|(_, v)| v));
        }
        out.extend(b";CODE=200");
    }
}
