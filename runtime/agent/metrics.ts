// Prometheus metrics of one agent, served at GET /metrics on the agent's socket.
import { Counter, Gauge, Registry } from "prom-client";
import { DIAGNOSTICS, type BfdState, type Diagnostic } from "../../model/vocabulary";

export class AgentMetrics {
    readonly registry = new Registry();
    readonly sessionState = new Gauge({
        name: "nublar_bfd_session_up", help: "1 if the BFD session is Up, else 0",
        labelNames: ["session", "peer", "kind"], registers: [this.registry],
    });
    readonly transitions = new Counter({
        name: "nublar_bfd_transitions_total", help: "BFD session state changes, by new state",
        labelNames: ["session", "to"], registers: [this.registry],
    });
    readonly detectionTimeouts = new Counter({
        name: "nublar_bfd_detection_timeouts_total", help: "BFD sessions that went Down because the detection time expired",
        labelNames: ["session"], registers: [this.registry],
    });
    readonly routeChanges = new Counter({
        name: "nublar_route_changes_total", help: "Kernel routes the agent installed or withdrew",
        labelNames: ["op"], registers: [this.registry],
    });
    readonly nginxPushes = new Counter({
        name: "nublar_nginx_pushes_total", help: "Upstream member sets pushed to Nginx, by result",
        labelNames: ["result"], registers: [this.registry],
    });
    readonly reconcileErrors = new Counter({
        name: "nublar_reconcile_errors_total", help: "Failed steps while applying the desired state",
        labelNames: ["step"], registers: [this.registry],
    });
    readonly reconciles = new Counter({
        name: "nublar_reconciles_total", help: "Reconcile passes", registers: [this.registry],
    });

    /** One BFD state change: the session's gauge, its transitions, and a detection timeout when that is why it went Down. */
    bfdChange(c: { session: string; peer: string; kind: string; to: BfdState; diagnostic: Diagnostic }): void {
        this.transitions.inc({ session: c.session, to: c.to });
        this.sessionState.set({ session: c.session, peer: c.peer, kind: c.kind }, c.to === "up" ? 1 : 0);
        if (c.to === "down" && c.diagnostic === DIAGNOSTICS.controlDetectionTimeExpired) this.detectionTimeouts.inc({ session: c.session });
    }
}
