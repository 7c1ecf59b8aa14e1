package node

import "net/http"

func (s *apiServer) getLedger(w http.ResponseWriter, r *http.Request) {
	l, err := s.n.Ledger()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, l)
}
