// The part of noVNC's RFB class (docs/API.md of @novnc/novnc) this UI uses; the package ships no
// type declarations.
declare module "@novnc/novnc" {
  export interface RfbOptions {
    shared?: boolean;
    credentials?: { username?: string; password?: string; target?: string };
    wsProtocols?: string[];
  }

  export default class RFB extends EventTarget {
    // A URL, a WebSocket, or any object with the members of one noVNC uses (a channel).
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket | object, options?: RfbOptions);
    scaleViewport: boolean;
    resizeSession: boolean;
    clipViewport: boolean;
    focusOnClick: boolean;
    viewOnly: boolean;
    background: string;
    disconnect(): void;
    focus(): void;
    clipboardPasteFrom(text: string): void;
    sendCtrlAltDel(): void;
  }
}
