"""The end-to-end benchmark's targets and printed report."""

from __future__ import annotations

from typing import Any

TARGET_VS_PASSTHROUGH = 0.8
TARGET_VS_NAIVE = 3.0
TARGET_P99_MS = 50.0
TARGET_RSS_MB = 200.0


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def add(name: str, value: Any, limit: Any, met: bool | None) -> None:
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    b, p, n = r.get("bridge_eps"), r.get("passthrough_eps"), r.get("naive_eps")
    if b and p:
        add(f"bridge_eps >= {TARGET_VS_PASSTHROUGH} x passthrough_eps", b,
            round(TARGET_VS_PASSTHROUGH * p, 1), b >= TARGET_VS_PASSTHROUGH * p)
    if b and n:
        add(f"bridge_eps >= {TARGET_VS_NAIVE:g} x naive_eps", b, round(TARGET_VS_NAIVE * n, 1),
            b >= TARGET_VS_NAIVE * n)
    if r.get("p99_ms") is not None:
        lat = r["latency"]
        add(f"p99_ms <= {TARGET_P99_MS:g} at {lat['rate_target_eps']:g} events/s", r["p99_ms"], TARGET_P99_MS,
            r["p99_ms"] <= TARGET_P99_MS)
    if r.get("peak_rss_mb") is not None:
        add(f"peak_rss_mb <= {TARGET_RSS_MB:g}", r["peak_rss_mb"], TARGET_RSS_MB, r["peak_rss_mb"] <= TARGET_RSS_MB)
    return out


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print()
    print(f"canvas-bridge end-to-end benchmark  ({m['date']})")
    print(f"{m['cpu_count']} CPUs, Python {m['python']} ({m['event_loop']}), {m['platform']}; "
          f"commit {m['git']['commit']}{' + uncommitted bridge/ changes' if m['git']['bridge_dirty'] else ''}")
    print(f"Apache Kafka {m['kafka']} ({r['broker']}), aiokafka {m['aiokafka']}, msgspec {m['msgspec']}; "
          f"load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}")
    mix = r["mix"]
    print(f"data: catalog mix, {mix['canvas']} Canvas + {mix['caliper']} Caliper samples made distinct per event, "
          f"{mix['avg_value_bytes']:.0f} B avg; {mix['typed_outputs_per_pass']} typed records per pass of "
          f"{mix['templates']} events")
    print()
    print(f"{'figure':<18}{'value':>14}  how")
    if "bridge_eps" in r:
        for kind in ("bridge", "passthrough", "naive"):
            runs = r[kind]["runs"]
            detail = ", ".join(f"{f['eps']:,.0f}" for f in runs)
            f0 = runs[0]
            steady = f0.get("eps_after_first_commit")
            print(f"{kind + '_eps':<18}{r[kind + '_eps']:>14,.0f}  {f0['events']} events, spawn -> committed == end "
                  f"in {f0['seconds']:.1f} s; runs: {detail}"
                  + (f"; after 1st commit {steady:,.0f}/s" if steady else ""))
            if "cpu_us_per_event" in f0:
                broker = (f", broker {f0['broker_cpu_us_per_event']:,.0f} µs/event"
                          if "broker_cpu_us_per_event" in f0 else "")
                conns = (f"; {f0['broker_connections']} connections to the broker"
                         if f0.get("broker_connections") is not None else "")
                print(f"{'':<18}{'':>14}  CPU: its own {f0['cpu_us_per_event']:,.0f} µs/event "
                      f"({f0['cores_used']} cores){broker}; host {f0['host_busy_pct']}% busy{conns}")
        diag = r.get("diagnostics", {})
        for kind, what in (("core_passthrough", "passthrough + Core.process on each value (raw values out)"),
                           ("core_fanout", "passthrough + Core.process, typed records out (no delivery "
                                           "bookkeeping)")):
            if kind in diag:
                f0 = diag[kind]["runs"][0]
                cpu = (f"; CPU {f0['cpu_us_per_event']:,.0f} µs/event ({f0['cores_used']} cores)"
                       if "cpu_us_per_event" in f0 else "")
                broker = (f", broker {f0['broker_cpu_us_per_event']:,.0f} µs/event"
                          if "broker_cpu_us_per_event" in f0 else "")
                runs_txt = ", ".join(f"{f['eps']:,.0f}" for f in diag[kind]["runs"])
                print(f"{kind + '_eps':<18}{diag[kind + '_eps']:>14,.0f}  diagnostic: {what}; "
                      f"runs: {runs_txt}{cpu}{broker}")
        print(f"{'':<18}{'':>14}  order: {' '.join(r['throughput_order'])}")
    if "latency" in r:
        lat = r["latency"]
        print(f"{'p50_ms':<18}{lat['p50_ms']:>14.2f}  raw produce -> typed record consumed, "
              f"{lat['offered_eps']:,.0f} events/s offered, {lat['count']} records after {lat['warmup_s']:g} s warm-up")
        print(f"{'p99_ms':<18}{lat['p99_ms']:>14.2f}  p90 {lat['p90_ms']}, p99.9 {lat['p999_ms']}, "
              f"max {lat['max_ms']} ms; received {lat['typed_records_received']}/{lat['typed_records_expected']}")
        print(f"{'':<18}{'':>14}  cores used: bridge {lat['bridge_cpu_cores']}, broker {lat['broker_cpu_cores']}, "
              f"consumer ({lat.get('consumer', 'aiokafka')}) {lat['latency_consumer_cpu_cores']}, "
              f"producer {lat['producer_cpu_cores']}; "
              f"host {lat['host_busy_pct']}% busy")
        print(f"{'':<18}{'':>14}  all committed {lat['committed_all_s_after_last_send']} s after the last send "
              f"(more than ~0.1 s: the bridge did not keep up)")
    if "backlog" in r:
        bl = r["backlog"]
        print(f"{'peak_rss_mb':<18}{bl.get('peak_rss_mb', float('nan')):>14.1f}  max(VmHWM, VmRSS every 0.5 s) "
              f"draining {bl['events']:,} events in {bl['seconds']:.1f} s ({bl['eps']:,.0f}/s); "
              f"backlog produced in {bl['produce_seconds']:.1f} s")
        if "cpu_us_per_event" in bl:
            print(f"{'':<18}{'':>14}  CPU: its own {bl['cpu_us_per_event']:,.0f} µs/event "
                  f"({bl['cores_used']} cores); host {bl['host_busy_pct']}% busy")
    print()
    for t in r["targets"]:
        verdict = "MET" if t["met"] else "NOT MET"
        print(f"target {t['target']:<42} {t['value']:>12,.1f} vs {t['limit']:>10,.1f}  -> {verdict}")
    if "profile" in r.get("backlog", {}):
        prof = r["backlog"]["profile"]
        if "self_pct" in prof:
            print(f"\nprofile of the bridge draining the backlog ({prof['file']}; % of active samples)")
            print("  by self time:")
            for pct, name in prof["self_pct"][:15]:
                print(f"  {pct:5.1f}%  {name}")
            print("  inclusive (bridge and aiokafka frames):")
            shown = 0
            for pct, name in prof["inclusive_pct"]:
                if ("bridge/" in name or "aiokafka/" in name) and shown < 20:
                    print(f"  {pct:5.1f}%  {name}")
                    shown += 1
    print(f"\n({r['elapsed_s']:.0f} s)")
