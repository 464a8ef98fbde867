// BFD detection times as the two ends of a session negotiate them (RFC 5880 §6.8.4): the
// detection time at one end is the remote's Detect Mult times the larger of the local Required
// Min RX and the remote's Desired Min TX. A session's detection time, for the SLA, is the worse
// of its two ends: a failure counts as detected when both sides have moved off the path.
import type { AgentConfig, AgentSession } from "../model/network/agent-config";
import { planAgents } from "../model/network/agent-plan";
import type { SitePlan } from "../model/network/site-plan";
import { nixosAgentPaths } from "../model/nix/render";
import type { Site } from "../model/site/model";

export type BfdTimers = AgentConfig["timers"];

export interface SessionDetection {
    node: string;
    session: string;
    kind: AgentSession["kind"];
    /** Detection at our end, and at the peer's. */
    localMs: number;
    remoteMs: number;
    detectionMs: number;
}

export interface DetectionSummary {
    /** The slowest session's detection time. */
    worstMs: number;
    worst?: { node: string; session: string };
    sessions: number;
}

export function negotiatedDetection(local: BfdTimers, remote: BfdTimers): { localMs: number; remoteMs: number; detectionMs: number } {
    const localMs = remote.detectMultiplier * Math.max(local.receiveIntervalMs, remote.transmitIntervalMs);
    const remoteMs = local.detectMultiplier * Math.max(remote.receiveIntervalMs, local.transmitIntervalMs);
    return { localMs, remoteMs, detectionMs: Math.max(localMs, remoteMs) };
}

/**
 * Every session of one node's agent config with its negotiated detection time. Path sessions
 * run between two nublar agents of the same site, which share the site's timers; gateway
 * sessions run against the provider's router, whose timers the site states (or which matches ours).
 */
export function agentDetections(agent: AgentConfig, providerTimers: (provider: string) => BfdTimers | undefined): SessionDetection[] {
    return agent.sessions.map((s) => {
        const remote = s.kind === "gateway" ? providerTimers(s.provider) ?? agent.timers : agent.timers;
        return { node: agent.node, session: s.id, kind: s.kind, ...negotiatedDetection(agent.timers, remote) };
    });
}

export function summarize(detections: SessionDetection[]): DetectionSummary {
    let worst: SessionDetection | undefined;
    for (const d of detections) if (!worst || d.detectionMs > worst.detectionMs) worst = d;
    return { worstMs: worst?.detectionMs ?? 0, worst: worst && { node: worst.node, session: worst.session }, sessions: detections.length };
}

/** The agent configs a site's nodes get, as a NixOS site renders them (paths do not affect timing or auth). */
export function plannedAgents(site: Site, plan?: SitePlan): AgentConfig[] {
    return planAgents(site, { paths: nixosAgentPaths }, plan);
}

export function providerTimersOf(site: Site): (provider: string) => BfdTimers | undefined {
    return (name) => site.providers.find((p) => p.name === name)?.bfd;
}
