// nublar's resource provider: the `pulumi-resource-nublar` plugin's Provider. It finds the
// handler for each resource's type token and does the wire work around it:
//   - secrets arrive wrapped; handlers see them revealed, and every output that came in secret,
//     or that a handler declares secret, goes back wrapped, so the state keeps it encrypted;
//   - `check` names each bad property; values unknown at preview are not checked;
//   - `diff` returns `replaces` and `deleteBeforeReplace` itself (neither Node.js provider server
//     honours `replaceOnChanges`);
//   - state written by the dynamic providers this replaced still holds their code in
//     `__provider`: `diff` ignores it, so moving a stack over changes nothing (no update, whose
//     outputs a preview could not know), and `read` (a refresh) drops it from the state.
import type * as pulumiProvider from "@pulumi/pulumi/provider";
import { checkInputs, type Handler } from "./handler";
import { DYNAMIC_CODE_FIELD, PROVIDER_VERSION } from "./tokens";
import { reveal, secretKeys, without, wrapSecrets, type Props } from "./wire";

// The handlers' own input and output types differ; the table holds them all.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyHandler = Handler<any, any>;

/** The type token in a URN: `urn:pulumi:stack::project::parent$type::name` → `type`. */
export function typeOf(urn: string): string {
    const qualified = urn.split("::")[2] ?? "";
    return qualified.slice(qualified.lastIndexOf("$") + 1);
}

export class NublarProvider implements pulumiProvider.Provider {
    readonly version = PROVIDER_VERSION;

    constructor(private readonly handlers: Readonly<Record<string, AnyHandler>>) {}

    private handler(urn: string): AnyHandler {
        const type = typeOf(urn);
        const h = this.handlers[type];
        if (!h) {
            throw new Error(`the nublar provider ${PROVIDER_VERSION} has no resource type '${type}' (${urn}); ` +
                "the program is newer than the installed plugin: run scripts/setup (or scripts/build-provider)");
        }
        return h;
    }

    async check(urn: string, _olds: Props, news: Props): Promise<pulumiProvider.CheckResult> {
        const failures = checkInputs(this.handler(urn).schema, reveal(news) as Props);
        // The inputs go back as they came, secrets still wrapped: they are what the state keeps.
        return { inputs: news, failures };
    }

    async diff(_id: string, urn: string, olds: Props, news: Props): Promise<pulumiProvider.DiffResult> {
        const h = this.handler(urn);
        const d = h.diff(plain(olds), reveal(news));
        return { changes: d.changes, replaces: d.replaces, deleteBeforeReplace: d.deleteBeforeReplace };
    }

    async create(urn: string, inputs: Props): Promise<pulumiProvider.CreateResult> {
        const h = this.handler(urn);
        const { id, outs } = await h.create(reveal(inputs));
        return { id, outs: wrapSecrets(outs, [...secretKeys(inputs), ...(h.secretOutputs ?? [])]) };
    }

    async update(id: string, urn: string, olds: Props, news: Props): Promise<pulumiProvider.UpdateResult> {
        const h = this.handler(urn);
        const before = plain(olds);
        const after = reveal(news);
        if (!h.update) throw new Error(`${urn}: this resource cannot change in place (its diff should have replaced it)`);
        const outs = await h.update(id, before, after);
        return { outs: wrapSecrets(outs, [...secretKeys(news), ...secretKeys(olds), ...(h.secretOutputs ?? [])]) };
    }

    async read(id: string, urn: string, props?: Props): Promise<pulumiProvider.ReadResult> {
        const h = this.handler(urn);
        if (!props) return { id, props };
        const state = plain(props);
        // An empty id tells the engine the resource is gone: the next `up` creates it again
        // (a lab after a reboot, a namespace deleted by hand, a node reinstalled).
        const exists = h.exists ? await h.exists(id, state) : true;
        return { id: exists ? id : "", props: wrapSecrets(state, [...secretKeys(props), ...(h.secretOutputs ?? [])]) };
    }

    async delete(id: string, urn: string, props: Props): Promise<void> {
        await this.handler(urn).delete?.(id, plain(props));
    }
}

/** A state's properties as a handler sees them: revealed, without a dynamic provider's code. */
function plain(props: Props): Props {
    return reveal(without(props, DYNAMIC_CODE_FIELD)) as Props;
}
