//! Notification delivery series, read at scrape time from the notifier's
//! counters. Labels: endpoint names from the config.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::notify::Notifier;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// (endpoint, delivered, failures, dropped, pending)
#[derive(Debug)]
pub(super) struct Snapshot {
    endpoints: Vec<(String, [u64; 4])>,
    overflow: u64,
}

impl Snapshot {
    pub(super) fn take(n: &Notifier) -> Snapshot {
        let (eps, overflow) = n.stats();
        Snapshot {
            endpoints: eps
                .into_iter()
                .map(|(name, s)| {
                    let v = [&s.delivered, &s.failures, &s.dropped, &s.pending]
                        .map(|a| a.load(Relaxed));
                    (name.to_string(), v)
                })
                .collect(),
            overflow,
        }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        if self.endpoints.is_empty() {
            return Ok(());
        }
        let series: [(&str, &str, MetricType); 4] = [
            (
                "notification_events_delivered",
                "Events the endpoint acknowledged with a 2xx",
                MetricType::Counter,
            ),
            (
                "notification_delivery_failures",
                "Delivery attempts that failed (retried)",
                MetricType::Counter,
            ),
            (
                "notification_events_dropped",
                "Events dropped because the endpoint's queue was full",
                MetricType::Counter,
            ),
            (
                "notification_events_pending",
                "Events stored and waiting for delivery",
                MetricType::Gauge,
            ),
        ];
        for (i, (name, help, kind)) in series.into_iter().enumerate() {
            let counter = matches!(kind, MetricType::Counter);
            let mut e = enc.encode_descriptor(name, help, None, kind)?;
            for (ep, v) in &self.endpoints {
                let l = EndpointLabel {
                    endpoint: ep.clone(),
                };
                if counter {
                    ConstCounter::new(v[i]).encode(e.encode_family(&l)?)?;
                } else {
                    ConstGauge::new(v[i] as i64).encode(e.encode_family(&l)?)?;
                }
            }
        }
        let e = enc.encode_descriptor(
            "notification_events_overflowed",
            "Pull events dropped because the in-memory hand-off was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.overflow).encode(e)?;
        Ok(())
    }
}
