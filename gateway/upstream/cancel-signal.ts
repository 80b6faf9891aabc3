/**
 * What the proxy, the admission gate and undici need of an abort signal. A real `AbortSignal`
 * has all of it, so callers off the hot path (background responses) pass their own.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * The per-request cancellation of the inference path, aborted when the client goes away (or the
 * rate limiter refuses while capacity is being reserved). It does what an `AbortController` does
 * for us at a fraction of the cost: Node's AbortSignal is an EventTarget (about 8 µs per request
 * under load in `npm run bench:profile`) and `AbortSignal.any` adds weak references that the GC
 * has to trace. Listeners run once, in the order added, on the first `abort`.
 */
export class RequestCancel implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: (() => void)[] | undefined;

  /** A signal aborted by `parent` as well as by its own `abort`. */
  static linkedTo(parent: CancelSignal): RequestCancel {
    const child = new RequestCancel();
    if (parent.aborted) child.abort(parent.reason);
    else parent.addEventListener('abort', () => child.abort(parent.reason), { once: true });
    return child;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.listeners;
    if (l === undefined) return;
    const i = l.indexOf(listener);
    if (i !== -1) l.splice(i, 1);
  }

  abort(reason: unknown = new DOMException('This operation was aborted', 'AbortError')): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const l = this.listeners;
    this.listeners = undefined;
    if (l !== undefined) for (const f of l) f();
  }
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it is aborted. */
export function sleepUnlessCancelled(ms: number, signal: CancelSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * undici takes any signal with `addEventListener`/`removeEventListener` and `aborted` (it checks
 * for those, not the class); its types name only AbortSignal and EventEmitter.
 */
export function undiciSignal(signal: CancelSignal): AbortSignal {
  return signal as AbortSignal;
}
