//! DNS exchanges for test captures: A and AAAA answers, and HTTPS (type 65) answers with
//! their ALPN, ECH presence, address hints and priorities.

use std::net::IpAddr;

use super::{ip, Scenario};

/// One HTTPS record of [`Scenario::dns_https_records`]: its SvcPriority, `alpn`, whether it
/// has an `ech` parameter, and its address hints.
#[derive(Clone, Copy, Debug)]
pub struct HttpsRecord<'a> {
    /// SvcPriority (1 is the most preferred ServiceMode record).
    pub priority: u16,
    /// The `alpn` protocols.
    pub alpn: &'a [&'a str],
    /// An `ech` parameter is present.
    pub ech: bool,
    /// `ipv4hint` and `ipv6hint` addresses.
    pub hints: &'a [&'a str],
}

impl Scenario {
    /// A full DNS exchange over UDP: query at `t_query_ms`, answer at `t_answer_ms` with the
    /// given addresses (A or AAAA by family). `qtype` is 1 (A) or 28 (AAAA).
    #[allow(clippy::too_many_arguments)]
    pub fn dns(
        &mut self,
        client: &str,
        resolver: &str,
        t_query_ms: f64,
        t_answer_ms: f64,
        name: &str,
        qtype: u16,
        answers: &[&str],
    ) -> &mut Self {
        use simple_dns::rdata::{RData, A, AAAA};
        use simple_dns::{
            Name, Packet as Dns, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE,
        };
        let id = (self.pkts.len() as u16)
            .wrapping_mul(31)
            .wrapping_add(7)
            .wrapping_add(self.dns_id_base);
        let ty = if qtype == 28 { TYPE::AAAA } else { TYPE::A };
        let Ok(qname) = Name::new(name) else {
            return self;
        };
        let mut q = Dns::new_query(id);
        q.questions.push(Question::new(
            qname.clone(),
            QTYPE::TYPE(ty),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let mut r = Dns::new_reply(id);
        r.questions.push(Question::new(
            qname.clone(),
            QTYPE::TYPE(ty),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for a in answers {
            let rdata = match ip(a) {
                IpAddr::V4(v4) => RData::A(A {
                    address: u32::from(v4),
                }),
                IpAddr::V6(v6) => RData::AAAA(AAAA {
                    address: u128::from(v6),
                }),
            };
            r.answers
                .push(ResourceRecord::new(qname.clone(), CLASS::IN, 60, rdata));
        }
        let sport = 30000 + (id % 20000);
        let (c, s) = (ip(client), ip(resolver));
        if let (Ok(qb), Ok(rb)) = (q.build_bytes_vec(), r.build_bytes_vec()) {
            self.udp(t_query_ms, c, sport, s, 53, &qb);
            self.udp(t_answer_ms, s, 53, c, sport, &rb);
        }
        self
    }

    /// A DNS HTTPS (type 65) exchange: query at `t_query_ms`, answer at `t_answer_ms` with one
    /// ServiceMode record (priority 1, target `.`) offering `alpn`, with an `ech` parameter
    /// when `ech`; see [`Scenario::dns_https_hints`] for address hints.
    #[allow(clippy::too_many_arguments)]
    pub fn dns_https(
        &mut self,
        client: &str,
        resolver: &str,
        t_query_ms: f64,
        t_answer_ms: f64,
        name: &str,
        alpn: &[&str],
        ech: bool,
    ) -> &mut Self {
        self.dns_https_hints(
            client,
            resolver,
            t_query_ms,
            t_answer_ms,
            name,
            alpn,
            ech,
            &[],
        )
    }

    /// [`Scenario::dns_https`] with `ipv4hint`/`ipv6hint` addresses.
    #[allow(clippy::too_many_arguments)]
    pub fn dns_https_hints(
        &mut self,
        client: &str,
        resolver: &str,
        t_query_ms: f64,
        t_answer_ms: f64,
        name: &str,
        alpn: &[&str],
        ech: bool,
        hints: &[&str],
    ) -> &mut Self {
        let record = HttpsRecord {
            priority: 1,
            alpn,
            ech,
            hints,
        };
        self.dns_https_records(client, resolver, t_query_ms, t_answer_ms, name, &[record])
    }

    /// A DNS HTTPS exchange whose answer holds `records` (ServiceMode, target `.`).
    pub fn dns_https_records(
        &mut self,
        client: &str,
        resolver: &str,
        t_query_ms: f64,
        t_answer_ms: f64,
        name: &str,
        records: &[HttpsRecord<'_>],
    ) -> &mut Self {
        use simple_dns::rdata::{RData, SVCParam, HTTPS, SVCB};
        use simple_dns::{
            CharacterString, Name, Packet as Dns, Question, ResourceRecord, CLASS, QCLASS, QTYPE,
            TYPE,
        };
        let id = (self.pkts.len() as u16)
            .wrapping_mul(31)
            .wrapping_add(11)
            .wrapping_add(self.dns_id_base);
        let Ok(qname) = Name::new(name) else {
            return self;
        };
        let question = || {
            Question::new(
                qname.clone(),
                QTYPE::TYPE(TYPE::HTTPS),
                QCLASS::CLASS(CLASS::IN),
                false,
            )
        };
        let mut q = Dns::new_query(id);
        q.questions.push(question());
        let mut r = Dns::new_reply(id);
        r.questions.push(question());
        for rec in records {
            let ids: Vec<CharacterString<'_>> = rec
                .alpn
                .iter()
                .filter_map(|a| CharacterString::new(a.as_bytes()).ok())
                .collect();
            let mut svcb = SVCB::new(rec.priority, Name::new_unchecked("."));
            svcb.set_alpn(&ids);
            let hints: Vec<IpAddr> = rec.hints.iter().map(|h| ip(h)).collect();
            let v4: Vec<u32> = hints
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(u32::from(*a)),
                    IpAddr::V6(_) => None,
                })
                .collect();
            let v6: Vec<u128> = hints
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V6(a) => Some(u128::from(*a)),
                    IpAddr::V4(_) => None,
                })
                .collect();
            if !v4.is_empty() {
                svcb.set_ipv4hint(&v4);
            }
            if !v6.is_empty() {
                svcb.set_ipv6hint(&v6);
            }
            if rec.ech {
                svcb.set_param(SVCParam::Ech(std::borrow::Cow::Borrowed(&[
                    0, 4, 1, 2, 3, 4,
                ])));
            }
            r.answers.push(ResourceRecord::new(
                qname.clone(),
                CLASS::IN,
                60,
                RData::HTTPS(HTTPS(svcb)),
            ));
        }
        let sport = 30000 + (id % 20000);
        let (c, s) = (ip(client), ip(resolver));
        if let (Ok(qb), Ok(rb)) = (q.build_bytes_vec(), r.build_bytes_vec()) {
            self.udp(t_query_ms, c, sport, s, 53, &qb);
            self.udp(t_answer_ms, s, 53, c, sport, &rb);
        }
        self
    }
}
