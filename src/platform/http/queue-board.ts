/**
 * The queue board (Bull Board) at `/admin/queues`: the state of the BullMQ queues named by
 * the service, their jobs, retries and failures. Bull Board has no authentication of its
 * own: every route of the board (page, assets, its JSON API) passes
 * {@link requireAdminPage} first, so only an admin signed in at `/admin/login` (or sending
 * an admin bearer token) reaches it. Its routes are hidden from the OpenAPI document.
 *
 * The queues are opened on the board's first admin request, not when the app is built: the
 * OpenAPI script and every test building the API would otherwise open Redis connections
 * for a board nobody looks at. They are closed when the app closes.
 */
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type OpenQueue, openQueue, type QueueConnection } from '../queues.ts'
import { ADMIN_LOGOUT_PATH, requireAdminPage } from './admin-session.ts'

/** Where the board is served unless told otherwise. */
export const QUEUE_BOARD_PATH = '/admin/queues'

/** Options of {@link queueBoardRoutes}. */
export interface QueueBoardOptions {
  /** The queues the board shows, by name. */
  queues: readonly string[]
  /** Where they live (`REDIS_URL`, `QUEUE_PREFIX`) and the logger of their connections. */
  connection: QueueConnection
  /** Where the board is served. @defaultValue {@link QUEUE_BOARD_PATH} */
  path?: string
  /** The board's title. @defaultValue Bourse queues */
  title?: string
  /** Opens one queue (tests may count or replace them). @defaultValue openQueue of ../queues.ts */
  open?: (name: string, connection: QueueConnection) => OpenQueue<unknown>
}

/** The board's routes, as a plugin to register under the API. */
export function queueBoardRoutes(options: QueueBoardOptions): FastifyPluginAsyncTypebox {
  const { connection } = options
  const path = options.path ?? QUEUE_BOARD_PATH
  const open = options.open ?? openQueue
  return async (app) => {
    const serverAdapter = new FastifyAdapter()
    serverAdapter.setBasePath(path)
    const board = createBullBoard({
      queues: [],
      // @bull-board/fastify pins an exact @bull-board/api; ours is pinned to the same version
      // (package.json), so there is one copy and its types match.
      serverAdapter,
      options: {
        uiConfig: {
          boardTitle: options.title ?? 'Bourse queues',
          miscLinks: [{ text: 'Sign out', url: ADMIN_LOGOUT_PATH }],
        },
      },
    })

    let opened: Array<OpenQueue<unknown>> | undefined
    const openQueues = () => {
      if (opened) return
      opened = options.queues.map((name) => open(name, connection))
      board.replaceQueues(opened.map(({ queue }) => new BullMQAdapter(queue)))
    }
    app.addHook('onClose', async () => {
      for (const queue of opened ?? []) {
        try {
          await queue.close()
        } catch (err) {
          connection.log.warn({ err, queue: queue.queue.name }, 'queue board: closing a queue failed')
        }
      }
    })

    await app.register(async (scope) => {
      // Hooks of this scope run before those of the board's own plugin (its routes are
      // registered below, as a child): nobody but an admin reaches a route of the board.
      scope.addHook('onRequest', requireAdminPage)
      scope.addHook('onRequest', async () => openQueues())
      await scope.register(serverAdapter.registerPlugin(), { prefix: path })
    })
  }
}
