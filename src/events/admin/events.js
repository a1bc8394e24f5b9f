// The Eye's admin page: browses events and event errors through the query API with an
// admin token kept in sessionStorage (this tab only; never in the URL). Every value from
// the API is put in the page as text, never as HTML: events carry whatever applications
// sent.

const TOKEN_KEY = 'bourse.eye.adminToken'
const $ = (selector) => document.querySelector(selector)

const tokenInput = $('#token')
const tokenState = $('#token-state')
const filters = $('#filters')
const status = $('#status')
const thead = $('#results thead')
const tbody = $('#results tbody')
const nextButton = $('#next')
const firstButton = $('#first')
const pageInfo = $('#page-info')
const viewButtons = { events: $('#view-events'), errors: $('#view-errors') }

/** What is shown: the view, its filters, and where the current page started. */
const state = { view: 'events', query: {}, page: 1, cursor: undefined, nextCursor: null, request: 0 }

const views = {
  events: {
    path: '/api/events',
    noun: 'events',
    filters: ['session_id', 'category', 'name', 'from', 'to', 'app', 'limit'],
    columns: ['Timestamp', 'App', 'Session', 'Category', 'Name', 'Data', 'Validated', 'Stored'],
    row: (event) => [
      text(event.timestamp, 'time'),
      text(event.app),
      sessionLink(event.session_id),
      text(event.category),
      text(event.name),
      json(event.data),
      text(event.validated ? 'yes' : 'no (no schema)'),
      text(event.stored_at, 'time'),
    ],
  },
  errors: {
    path: '/api/event-errors',
    noun: 'errors',
    filters: ['category', 'name', 'from', 'to', 'app', 'limit'],
    columns: ['Stored', 'App', 'Session', 'Category', 'Name', 'Reasons', 'Raw event'],
    row: (error) => [
      text(error.stored_at, 'time'),
      text(error.app),
      error.session_id === null ? text('-') : sessionLink(error.session_id),
      text(error.category ?? '-'),
      text(error.name ?? '-'),
      reasons(error.reasons),
      details('raw event', error.raw),
    ],
  },
}

function element(tag, className, content) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (content !== undefined) node.textContent = content
  return node
}

function text(value, className) {
  return element('span', className, String(value))
}

function json(value) {
  return element('pre', 'json', JSON.stringify(value))
}

function details(summary, value) {
  const node = element('details')
  node.append(element('summary', undefined, summary), element('pre', 'json', JSON.stringify(value, null, 2)))
  return node
}

function reasons(list) {
  const ul = element('ul', 'reasons')
  for (const reason of list) {
    const li = element('li')
    li.append(element('code', undefined, reason.field), document.createTextNode(` ${reason.message}`))
    ul.append(li)
  }
  return ul
}

/** A session id that filters the events by that session when clicked. */
function sessionLink(sessionId) {
  const button = element('button', 'session', sessionId)
  button.type = 'button'
  button.title = 'Show the events of this session'
  button.addEventListener('click', () => {
    setView('events')
    filters.elements.namedItem('session_id').value = sessionId
    search()
  })
  return button
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? ''
}

function showTokenState() {
  tokenState.textContent = token() ? 'token set for this tab' : 'no token'
}

function say(message, isError = false) {
  status.textContent = message
  status.classList.toggle('error', isError)
}

/** The filters of the form that apply to the current view and are not empty. */
function readFilters() {
  const query = {}
  for (const name of views[state.view].filters) {
    const value = filters.elements.namedItem(name).value.trim()
    if (value !== '') query[name] = value
  }
  return query
}

function setView(view) {
  state.view = view
  for (const [name, button] of Object.entries(viewButtons)) button.setAttribute('aria-pressed', String(name === view))
  document.body.dataset.view = view
  $('#from-label').textContent = view === 'events' ? 'From' : 'Stored from'
  $('#to-label').textContent = view === 'events' ? 'To' : 'Stored to'
}

function renderHead(columns) {
  const tr = element('tr')
  for (const column of columns) tr.append(element('th', undefined, column))
  thead.replaceChildren(tr)
}

function renderRows(items, row) {
  tbody.replaceChildren(
    ...items.map((item) => {
      const tr = element('tr')
      tr.dataset.id = item.id
      for (const cell of row(item)) {
        const td = element('td')
        td.append(cell)
        tr.append(td)
      }
      return tr
    }),
  )
}

/** Describes an error answer of the API: its status, code, message and the fields named. */
function describeFailure(response, body) {
  const error = body && typeof body === 'object' ? body.error : undefined
  if (!error) return `HTTP ${response.status}`
  const fields = Array.isArray(error.details)
    ? error.details.map((d) => `${d.field} ${d.message}`).join('; ')
    : error.details && error.details.field
      ? error.details.field
      : ''
  return `HTTP ${response.status} ${error.code}: ${error.message}${fields ? ` (${fields})` : ''}`
}

/** Loads the page of the current view that starts at `state.cursor`. */
async function load() {
  const view = views[state.view]
  if (!token()) {
    say('Enter an admin token to browse.', true)
    return
  }
  const request = ++state.request
  const params = new URLSearchParams(state.query)
  if (state.cursor) params.set('cursor', state.cursor)
  say('Loading...')
  nextButton.disabled = true
  let response
  let body
  try {
    response = await fetch(`${view.path}?${params}`, { headers: { authorization: `Bearer ${token()}` } })
    body = await response.json().catch(() => undefined)
  } catch (err) {
    if (request === state.request) say(`The API did not answer: ${err.message}`, true)
    return
  }
  // A slower answer to an older request must not replace a newer one.
  if (request !== state.request) return
  if (!response.ok) {
    renderHead(view.columns)
    renderRows([], view.row)
    pageInfo.textContent = ''
    say(describeFailure(response, body), true)
    return
  }
  state.nextCursor = body.next_cursor
  renderHead(view.columns)
  renderRows(body.items, view.row)
  nextButton.disabled = body.next_cursor === null
  firstButton.disabled = state.page === 1
  pageInfo.textContent = `page ${state.page}`
  const more = body.next_cursor === null ? 'last page' : 'more on the next page'
  say(`${body.items.length} ${view.noun} on page ${state.page}, ${more}.`)
}

function search() {
  state.query = readFilters()
  state.page = 1
  state.cursor = undefined
  return load()
}

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const value = tokenInput.value.trim()
  if (value === '') {
    say('Paste an admin token first.', true)
    return
  }
  sessionStorage.setItem(TOKEN_KEY, value)
  tokenInput.value = ''
  showTokenState()
  search()
})

$('#token-forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY)
  showTokenState()
  thead.replaceChildren()
  tbody.replaceChildren()
  nextButton.disabled = true
  say('Token forgotten. Enter an admin token to browse.')
})

filters.addEventListener('submit', (event) => {
  event.preventDefault()
  search()
})

$('#clear').addEventListener('click', () => {
  filters.reset()
  search()
})

for (const [name, button] of Object.entries(viewButtons)) {
  button.addEventListener('click', () => {
    setView(name)
    search()
  })
}

nextButton.addEventListener('click', () => {
  if (state.nextCursor === null) return
  state.cursor = state.nextCursor
  state.page += 1
  load()
})

firstButton.addEventListener('click', () => {
  state.cursor = undefined
  state.page = 1
  load()
})

setView('events')
showTokenState()
if (token()) search()
