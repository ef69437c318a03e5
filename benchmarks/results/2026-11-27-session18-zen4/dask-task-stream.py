"""Task stream of lstmx.dask.predict at L (8 chunks of B=64): python dask-task-stream.py N_WORKERS; per task: worker, start, stop (s from the call)."""
import sys; sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
import logging, time
import dask_bench as db
if __name__ == '__main__':
    import lstmx, lstmx.dask
    from distributed import futures_of, wait, get_task_stream
    s = db.SIZES["L"]
    lc, client = db.cluster(int(sys.argv[1]))
    lstm = lstmx.LSTM(s["I"], s["H"], seed=0)
    run = db.cluster_predict(client, lstm, s, 8)
    run()
    for rep in range(3):
        with get_task_stream(client) as ts:
            t0 = time.time(); run(); wall = time.time() - t0
        t_start = min(t["startstops"][0]["start"] for t in ts.data)
        print(f"wall {wall:.3f}")
        for t in sorted(ts.data, key=lambda t: t["startstops"][0]["start"]):
            for ss in t["startstops"]:
                print(f"   {t['worker'][-5:]} {ss['action']:9} {ss['start']-t0:7.3f} {ss['stop']-t0:7.3f}  {t['key'][0] if isinstance(t['key'], tuple) else t['key']}"[:110])
    client.close(); lc.close()
