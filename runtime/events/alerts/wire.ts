// The alerts consumer's sink: network events go through the detector (detector.ts); its alerts
// are published to the alerts topic (the dashboard and the lake read them there) and, when a
// routing key is configured, pushed to PagerDuty (pagerduty.ts). A tick each second lets grace
// and quiet periods end without a new event.
import { SinkRefusal, type Delivered } from "../consume";
import type { NublarEvent } from "../../../model/events/schema";
import { AlertDetector } from "./detector";
import { PagerDutyNotifier } from "./pagerduty";

export interface AlertsSinkOptions {
    site: string;
    url: string;
    /** PagerDuty's routing key (a Pulumi secret); without it alerts stay on the bus. */
    routingKey?: string;
    publish: (events: NublarEvent[]) => Promise<void>;
    log?: (m: string) => void;
    tickMs?: number;
}

export function alertsSink(o: AlertsSinkOptions): { handle: (batch: Delivered[]) => Promise<void>; close: () => Promise<void>; detector: AlertDetector } {
    const detector = new AlertDetector();
    const notifier = o.routingKey ? new PagerDutyNotifier({ routingKey: o.routingKey, url: o.url, log: o.log }) : undefined;
    const emit = async (alerts: NublarEvent[]) => {
        if (!alerts.length) return;
        await o.publish(alerts);
        for (const a of alerts) if (a.type === "alert") notifier?.notify(a);
    };
    let ticking = Promise.resolve();
    const timer = setInterval(() => {
        ticking = ticking.then(() => emit(detector.tick(Date.now()))).catch((err: Error) => o.log?.(`alerts: ${err.message}`));
    }, o.tickMs ?? 1000);
    timer.unref();
    return {
        detector,
        async handle(batch) {
            const now = Date.now();
            // Published before the offsets are committed: a crash re-reads the batch, and the
            // detector's dedup keys keep PagerDuty from paging twice for one open condition.
            const alerts: NublarEvent[] = [];
            for (const d of batch) {
                try {
                    alerts.push(...detector.observe(d.event, now));
                } catch (err) {
                    // The detector is pure: an event it fails on fails it every time. What came
                    // before goes out; the event is a refusal (consume.ts dead-letters it alone).
                    await emit(alerts);
                    throw new SinkRefusal(`the alert detector failed on ${d.event.id}: ${(err as Error).message}`);
                }
            }
            await emit(alerts);
        },
        async close() {
            clearInterval(timer);
            await ticking;
            await notifier?.close();
        },
    };
}
