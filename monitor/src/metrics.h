/* metrics.h — per-(service, method) RPC totals for Prometheus, accumulated
 * by the monitor from the stats poller's deltas; being written. */
#ifndef MON_METRICS_H
#define MON_METRICS_H

typedef struct mon_metrics mon_metrics;

#endif
